-- Delete every key in KEYS that still holds token ARGV[1]; others are left alone, so that a
-- late release can never delete the next holder's lock. Returns how many keys were deleted.
-- With a non-empty ARGV[2] (the releasing client's id, sent as the message) each deletion is
-- announced on channel ARGV[3]..key, so waiters retry at once instead of polling. An undo of a
-- failed round does not announce: nobody held the lock.
local deleted = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    deleted = deleted + 1
    if ARGV[2] ~= '' then
      redis.call('PUBLISH', ARGV[3] .. key, ARGV[2])
    end
  end
end
return deleted
