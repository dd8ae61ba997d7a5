-- The members of set KEYS[1] (empty when it does not exist).
return redis.call('SMEMBERS', KEYS[1])
