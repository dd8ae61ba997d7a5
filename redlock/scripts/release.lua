-- Delete every lock key that still holds token ARGV[1]; others are left alone, so that a late
-- release can never delete the next holder's lock. Returns how many keys were deleted.
-- A release (non-empty ARGV[2], the releasing client's id) passes each key to the head of its
-- waiter queue (queue.lua: a claim of ARGV[5] ms, the head's client woken on channel
-- ARGV[4]..client) and announces the release on channel ARGV[3]..key with ARGV[2] as message;
-- then KEYS are the n lock keys, their n queues and n queue deadlines. An undo of a failed
-- round (empty ARGV[2]; KEYS are the lock keys) just deletes: nobody held the lock.
local token, announce = ARGV[1], ARGV[2]
local n = #KEYS
if announce ~= '' then
  n = n / 3
end
local deleted = 0
for i = 1, n do
  if redis.call('GET', KEYS[i]) == token then
    deleted = deleted + 1
    if announce ~= '' then
      pass_on(KEYS[i], KEYS[n + i], KEYS[2 * n + i], tonumber(ARGV[5]), ARGV[4])
      redis.call('PUBLISH', ARGV[3] .. KEYS[i], announce)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return deleted
