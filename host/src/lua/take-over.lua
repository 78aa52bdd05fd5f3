if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
redis.call('SREM', KEYS[5], ARGV[1])
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  redis.call('HSET', KEYS[3], all[i], all[i + 1])
  redis.call('SADD', KEYS[4], all[i])
end
if #all > 0 then redis.call('PEXPIRE', KEYS[4], 604800000) end
redis.call('DEL', KEYS[2])
return all
