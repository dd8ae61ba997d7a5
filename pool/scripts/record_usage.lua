-- Adds usage figures. KEYS[1] is the pool's set of tag names; then per figure two keys: the
-- tag's set of values and the (tag, value) hash of figures. ARGV holds per figure four
-- values: tag, value, field, amount (an integer).
-- Returns the number of figures added.
local n = #ARGV / 4
for i = 0, n - 1 do
  local tag, value, field, amount = ARGV[1 + 4 * i], ARGV[2 + 4 * i], ARGV[3 + 4 * i], ARGV[4 + 4 * i]
  redis.call('SADD', KEYS[1], tag)
  redis.call('SADD', KEYS[2 + 2 * i], value)
  redis.call('HINCRBY', KEYS[3 + 2 * i], field, amount)
end
return n
