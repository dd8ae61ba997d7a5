-- Delete every lock key that still holds token ARGV[1]; others are left alone, so that a late
-- release can never delete the next holder's lock. Returns how many keys were deleted.
-- KEYS are the n lock keys, their n queues and n queue deadlines (queue.lua). Each deleted key
-- is granted to the head of its waiter queue (queue.lua's pass_on: at least ARGV[5] ms, the
-- head's client woken on channel ARGV[4]..client), also for the undo of a failed round: a waiter must not sleep
-- through a key that came free. A release (non-empty ARGV[2], the releasing client's id) also
-- announces itself on channel ARGV[3]..key with ARGV[2] as message; an undo does not.
local token, announce = ARGV[1], ARGV[2]
local n = #KEYS / 3
local deleted = 0
for i = 1, n do
  if redis.call('GET', KEYS[i]) == token then
    deleted = deleted + 1
    pass_on(KEYS[i], KEYS[n + i], KEYS[2 * n + i], tonumber(ARGV[5]), ARGV[4])
    if announce ~= '' then
      redis.call('PUBLISH', ARGV[3] .. KEYS[i], announce)
    end
  end
end
return deleted
