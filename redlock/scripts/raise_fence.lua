-- Fencing write-back: counter = max(counter, ARGV[1]) for every counter in KEYS, so that any
-- later majority meets a counter at least this high and hands out a strictly larger token.
local fence = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0')
  if current < fence then
    redis.call('SET', key, ARGV[1])
  end
end
return 1
