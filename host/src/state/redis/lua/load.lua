local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return {'n'} end
local ttl = tostring(redis.call('PTTL', KEYS[1]))
if t == 'hash' then
  local c = redis.call('HMGET', KEYS[1], 'c', 's')
  return {'c', ttl, c[1] or '0', c[2] or '0'}
elseif t == 'string' then
  return {'t', ttl, redis.call('GET', KEYS[1])}
elseif t == 'list' then
  local out = {'l', ttl}
  for _, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do table.insert(out, v) end
  return out
end
return {'n'}
