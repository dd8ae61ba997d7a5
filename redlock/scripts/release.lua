-- Delete every lock key that still holds token ARGV[1]; others are left alone, so that a late
-- release can never delete the next holder's lock. Returns how many keys were deleted.
-- KEYS are the n lock keys, their n queues and n queue deadlines (queue.lua). Each deleted key
-- is granted to the head of its waiter queue (queue.lua's pass_on), also for the undo of a
-- failed round: a waiter must not sleep through a key that came free. A release (non-empty
-- ARGV[2], the releasing client's id) also announces itself on channel
-- RELEASE_CHANNEL_PREFIX..key with ARGV[2] as message; an undo does not.
local token, announce = ARGV[1], ARGV[2]
local n = #KEYS / 3
local deleted = 0
for i = 1, n do
  if redis.call('GET', KEYS[i]) == token then
    deleted = deleted + 1
    pass_on(KEYS[i], KEYS[n + i], KEYS[2 * n + i])
    if announce ~= '' then
      redis.call('PUBLISH', RELEASE_CHANNEL_PREFIX .. KEYS[i], announce)
    end
  end
end
return deleted
