-- Store a finished computation's result: KEYS[1] = ARGV[1], expiring after ARGV[2] ms
-- ('0': no expiry, only when the caller explicitly asked for that). Returns 1.
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
