-- Record a client's description (owner.rs): KEYS[1] = ARGV[1] for ARGV[2] ms.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
