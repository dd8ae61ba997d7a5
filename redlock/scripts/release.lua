-- Delete every key in KEYS that still holds token ARGV[1]; others are left alone, so that a
-- late release can never delete the next holder's lock. Returns how many keys were deleted.
local deleted = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted
