-- Reset the ttl of every key in KEYS to ARGV[2] ms, but only if all of them still hold
-- token ARGV[1]: a lock that is partly gone is not silently revived. Returns 1 or 0.
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= ARGV[1] then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[2])
end
return 1
