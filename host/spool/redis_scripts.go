package spool

import "github.com/redis/go-redis/v9"

// (Redis refuses "-0" as an integer: a counter moved by a negative
// amount is moved only when the amount is not zero.)
//
// The Redis spool's writes are Lua scripts, so that each is atomic: a
// counter moves only with the entry it counts, and an XACK or ZREM that
// finds nothing (another host got there first) changes no counter.

// luaLib is shared by the scripts that trim the log.
const luaLib = `
local function idparts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function idnext(id)
  local ms, seq = idparts(id)
  return string.format('%.0f-%.0f', ms, seq + 1)
end
local function idless(a, b)
  local am, as = idparts(a)
  local bm, bs = idparts(b)
  return am < bm or (am == bm and as < bs)
end
-- trim deletes the entries of stream key that every group is past, up to
-- 10000 of them, and takes them off the counters. It returns how many.
local function trim(counts, key)
  if redis.call('EXISTS', key) == 0 then return 0 end
  local groups = redis.call('XINFO', 'GROUPS', key)
  if #groups == 0 then return 0 end
  local low = nil
  for _, g in ipairs(groups) do
    local f = {}
    for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
    local lo
    if tonumber(f['pending']) > 0 then
      lo = redis.call('XPENDING', key, f['name'])[2]
    else
      lo = idnext(f['last-delivered-id'])
    end
    if low == nil or idless(lo, low) then low = lo end
  end
  local old = redis.call('XRANGE', key, '-', '(' .. low, 'COUNT', 10000)
  if #old == 0 then return 0 end
  local bytes = 0
  for _, e in ipairs(old) do bytes = bytes + string.len(e[2][2]) end
  redis.call('XTRIM', key, 'MINID', idnext(old[#old][1]))
  redis.call('HINCRBY', counts, 'events', -#old)
  if bytes > 0 then redis.call('HINCRBY', counts, 'bytes', -bytes) end
  return #old
end
`

// scriptAppend: KEYS counts, sinks, log streams…; ARGV limit events,
// limit bytes, channel, n, size, then (stream index, record) pairs. It
// returns 1 when appended, 0 when full (after trimming what it could).
var scriptAppend = redis.NewScript(luaLib + `
local counts, sinks = KEYS[1], KEYS[2]
local le, lb, chan = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local n, size = tonumber(ARGV[4]), tonumber(ARGV[5])
local function fits()
  local c = redis.call('HMGET', counts, 'events', 'scheduled', 'bytes')
  local ev, sc, by = tonumber(c[1] or '0'), tonumber(c[2] or '0'), tonumber(c[3] or '0')
  return not ((le > 0 and ev + sc + n > le) or (lb > 0 and by + size > lb))
end
if not fits() then
  local cut = 0
  for i = 3, #KEYS do cut = cut + trim(counts, KEYS[i]) end
  if cut == 0 or not fits() then return 0 end
end
for i = 6, #ARGV, 2 do
  redis.call('XADD', KEYS[tonumber(ARGV[i])], '*', 'e', ARGV[i + 1])
end
redis.call('HINCRBY', counts, 'events', n)
redis.call('HINCRBY', counts, 'bytes', size)
for _, g in ipairs(redis.call('SMEMBERS', sinks)) do
  redis.call('HINCRBY', counts, 'backlog:' .. g, n)
end
redis.call('PUBLISH', chan, '')
return 1
`)

// scriptTrim: KEYS counts, log stream. It returns how many it deleted.
var scriptTrim = redis.NewScript(luaLib + `return trim(KEYS[1], KEYS[2])`)

// scriptRegister: KEYS sinks, counts, log streams…; ARGV group. A new
// group starts at the end of every stream; a known one is left as it is.
var scriptRegister = redis.NewScript(`
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 3, #KEYS do
  pcall(redis.call, 'XGROUP', 'CREATE', KEYS[i], ARGV[1], '$', 'MKSTREAM')
end
redis.call('HSET', KEYS[2], 'backlog:' .. ARGV[1], 0, 'dead:' .. ARGV[1], 0)
return 1
`)

// scriptForget: KEYS sinks, counts, then streams and retry sets (ARGV[2]
// of each); ARGV group, number of partitions. It deletes a group, its
// retries and its counters (dead letters are deleted by the caller).
var scriptForget = redis.NewScript(`
local g, n = ARGV[1], tonumber(ARGV[2])
redis.call('SREM', KEYS[1], g)
local sc = 0
for i = 3, 2 + n do pcall(redis.call, 'XGROUP', 'DESTROY', KEYS[i], g) end
for i = 3 + n, 2 + 2 * n do
  sc = sc + redis.call('ZCARD', KEYS[i])
  redis.call('DEL', KEYS[i])
end
if sc > 0 then redis.call('HINCRBY', KEYS[2], 'scheduled', -sc) end
redis.call('HDEL', KEYS[2], 'backlog:' .. g, 'dead:' .. g)
return 1
`)

// scriptResolve's operations follow ARGV group and channel, 11 ARGV
// each: what (done, retry or dead), source key index, source (stream id,
// or retry member: a delivery record, which starts with byte 2), retry
// key index, due (ms), record, dead set index, dead record hash index,
// dead index hash index, dead member, id. Unused ones are 0 or "".
// scriptResolve: KEYS counts, then the keys the operations name. A
// source that is gone (acked or removed by another host) is skipped. It
// returns 1 when something was scheduled (Leases should look again).
var scriptResolve = redis.NewScript(`
local counts, g, chan = KEYS[1], ARGV[1], ARGV[2]
local woke = 0
for i = 3, #ARGV, 11 do
  local what, src, ref = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2]
  local from_log = string.sub(ref, 1, 1) ~= '\2'
  local got
  if from_log then
    got = redis.call('XACK', src, g, ref)
  else
    got = redis.call('ZREM', src, ref)
  end
  if got == 1 then
    if not from_log then redis.call('HINCRBY', counts, 'scheduled', -1) end
    if what == 'retry' then
      redis.call('ZADD', KEYS[tonumber(ARGV[i + 3])], ARGV[i + 4], ARGV[i + 5])
      redis.call('HINCRBY', counts, 'scheduled', 1)
      woke = 1
    else
      redis.call('HINCRBY', counts, 'backlog:' .. g, -1)
    end
    if what == 'dead' then
      local dz, dr, di = KEYS[tonumber(ARGV[i + 6])], KEYS[tonumber(ARGV[i + 7])], KEYS[tonumber(ARGV[i + 8])]
      local member, id = ARGV[i + 9], ARGV[i + 10]
      local old = redis.call('HGET', di, id)
      if old then
        redis.call('ZREM', dz, old)
      else
        redis.call('HINCRBY', counts, 'dead:' .. g, 1)
      end
      redis.call('ZADD', dz, 0, member)
      redis.call('HSET', di, id, member)
      redis.call('HSET', dr, id, ARGV[i + 5])
    end
  end
end
if woke == 1 then redis.call('PUBLISH', chan, '') end
return woke
`)

// scriptMoveDead: KEYS counts, dead set, dead records, dead index, retry
// set; ARGV group, channel, due (ms), then (id, retry record or "")
// pairs: an empty record discards. It returns how many it moved.
var scriptMoveDead = redis.NewScript(`
local counts, dz, dr, di, rz = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local g, chan, due = ARGV[1], ARGV[2], ARGV[3]
local moved, replayed = 0, 0
for i = 4, #ARGV, 2 do
  local id, rec = ARGV[i], ARGV[i + 1]
  local member = redis.call('HGET', di, id)
  if member then
    redis.call('ZREM', dz, member)
    redis.call('HDEL', di, id)
    redis.call('HDEL', dr, id)
    moved = moved + 1
    if rec ~= '' then
      redis.call('ZADD', rz, due, rec)
      replayed = replayed + 1
    end
  end
end
if moved > 0 then redis.call('HINCRBY', counts, 'dead:' .. g, -moved) end
if replayed > 0 then
  redis.call('HINCRBY', counts, 'scheduled', replayed)
  redis.call('HINCRBY', counts, 'backlog:' .. g, replayed)
  redis.call('PUBLISH', chan, '')
end
return moved
`)

// scriptRenew: KEYS partition lease; ARGV host, ttl (ms). It keeps a
// lease the host holds, or takes it again if it has lapsed (Redis was
// restarted without it); 0 when another host holds it.
var scriptRenew = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// scriptRelease: KEYS partition lease; ARGV host. It gives up a lease the
// host holds.
var scriptRelease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
