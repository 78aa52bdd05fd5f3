for _, k in ipairs(KEYS) do
  if redis.call('GET', k) ~= ARGV[1] then return redis.error_reply('LOCKLOST ' .. k) end
end
local i = 2
while i <= #ARGV do
  local op, key, ttl = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local expiring = tonumber(ttl) > 0
  if op == 'D' then
    redis.call('DEL', key)
    i = i + 3
  elseif op == 'T' then
    if expiring then redis.call('SET', key, ARGV[i + 3], 'PX', ttl) else redis.call('SET', key, ARGV[i + 3]) end
    i = i + 4
  elseif op == 'C' then
    redis.call('DEL', key)
    redis.call('HSET', key, 'c', ARGV[i + 3], 's', ARGV[i + 4])
    if expiring then redis.call('PEXPIRE', key, ttl) end
    i = i + 5
  elseif op == 'L' then
    local n = tonumber(ARGV[i + 3])
    redis.call('DEL', key)
    for j = 1, n do redis.call('RPUSH', key, ARGV[i + 3 + j]) end
    if expiring and n > 0 then redis.call('PEXPIRE', key, ttl) end
    i = i + 4 + n
  elseif op == 'H' then
    redis.call('HSET', key, ARGV[i + 3], ARGV[i + 4])
    i = i + 5
  else
    return redis.error_reply('unknown op ' .. op)
  end
end
for _, k in ipairs(KEYS) do redis.call('DEL', k) end
return 1
