-- A fenced writer's write-back (rwlock.rs): counter KEYS[1] = max(counter, ARGV[1]), so that
-- any later majority meets a counter at least this high and hands out a larger one.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
