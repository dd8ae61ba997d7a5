-- Take every key in KEYS for token ARGV[1] with ttl ARGV[2] milliseconds, or none of them.
-- Returns {1} when granted, or {0, i, pttl} naming the first key (1-based) held by someone
-- else and its remaining ttl in ms (-1: the holder set no expiry).
-- A key that already holds our own token counts as ours, so a retried request is idempotent.
local token = ARGV[1]
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder and holder ~= token then
    return {0, i, redis.call('PTTL', key)}
  end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, token, 'PX', ARGV[2])
end
return {1}
