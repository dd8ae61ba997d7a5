-- A resizable semaphore's number of permits on this server (size.rs). KEYS[1] is a hash:
-- 'epoch' (the last set_permits: '<ms, 15 digits>-<random>', compared as strings) and
-- 'base' (the permits it set); KEYS[2] a hash of the adds made since: add id -> delta.
-- ARGV[1]: 'set', 'add' or 'read'.
--   set epoch base: applied when epoch is newer than this server's (the newest set wins
--     everywhere); the adds of older epochs are dropped. Returns 1 when this server now
--     has that epoch, else the error 'QUORATE_STALE_EPOCH' (a newer set is here: the
--     caller reads again and sets with a newer epoch, so a set is never silently lost).
--   add epoch base id delta [id delta ...]: made under the caller's newest epoch; a server
--     that missed that set catches up first (epoch, base); one that has a newer set
--     refuses (the caller reads again and adds on top). Adding an id twice counts once.
--     A read writes back what it united with several pairs. Returns 1, or the error
--     'QUORATE_STALE_EPOCH'.
--   read: {epoch or false, base or false, in sync (1 or 0), id, delta, id, delta, ...}.
-- The keys never expire: a semaphore's size is configuration. take.lua reads the same
-- record to refuse slots at or above this server's number. A server that lost data or
-- restarted (restart_mark, from quarantine.lua) may hold an older record, or none: it is
-- out of sync until a write under its current marker ('synced'), which a read that sees
-- it out of sync sends; until then take.lua refuses every slot here.
local size, adds, op = KEYS[1], KEYS[2], ARGV[1]
local epoch = redis.call('HGET', size, 'epoch')

local function catch_up(new_epoch, base)
  if not epoch or new_epoch > epoch then
    redis.call('HSET', size, 'epoch', new_epoch, 'base', base)
    redis.call('DEL', adds)
    epoch = new_epoch
  end
end

if op == 'set' or op == 'add' then
  catch_up(ARGV[2], ARGV[3])
  if epoch ~= ARGV[2] then
    return redis.error_reply('QUORATE_STALE_EPOCH')
  end
  for i = 4, #ARGV - 1, 2 do
    redis.call('HSET', adds, ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', size, 'synced', restart_mark or '')
  return 1
end
local in_sync = 1
if restart_mark and redis.call('HGET', size, 'synced') ~= restart_mark then
  in_sync = 0
end
local out = {epoch or false, redis.call('HGET', size, 'base') or false, in_sync}
for _, v in ipairs(redis.call('HGETALL', adds)) do
  out[#out + 1] = v
end
return out
