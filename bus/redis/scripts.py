"""The Lua scripts behind `RedisBus`'s batch operations, each one atomic step and one round trip.

Scripts run on the server, so a read, its idempotency claims and its trim accounting cannot interleave
with another consumer's. Every key a script touches is passed in KEYS or derived from a claim scope
inside the workspace's hash tag, so a workspace's scripts stay on one Redis Cluster shard.
"""

from __future__ import annotations

# Shared helpers. `claim` returns the status of an entry's message id for the reading consumer:
# unclaimed -> claim it for `lease` ms ("new"); already done -> "done"; held by this consumer ->
# "new" (its own earlier attempt); held by another -> "busy".
_PRELUDE = """
local function field(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then return flat[i + 1] end
  end
  return nil
end

local function claim(scope, consumer, lease, flat)
  if scope == '' then return 'new' end
  local id = field(flat, 'id')
  if not id then return 'new' end
  local key = scope .. id
  -- One call takes an unheld claim and returns a held one's owner (NX with GET: Redis 7.0); older
  -- servers refuse the pair, and get GET then SET, equally atomic inside the script.
  local held = redis.pcall('SET', key, consumer, 'NX', 'PX', lease, 'GET')
  if type(held) == 'table' and held['err'] then
    held = redis.call('GET', key)
    if not held then redis.call('SET', key, consumer, 'PX', lease) end
  end
  if not held then
    return 'new'
  elseif held == '+done' then
    return 'done'
  elseif held == consumer then
    redis.call('PEXPIRE', key, lease)
    return 'new'
  end
  return 'busy'
end
"""

# KEYS: the streams, highest priority first. ARGV: group, consumer, count, claim scope ('' for none),
# lease ms. Returns {entries, trimmed, marks}:
# - entries: {stream index, entry id, flat fields, claim status}, read in stream order;
# - trimmed: flat {stream index, count} pairs, count -1 when it cannot be known;
# - marks: each stream's last delivered id, for the caller's blocking XREAD when nothing was read.
#
# Trim accounting: Redis 7 keeps `entries-added` per stream and `entries-read` per group. When the
# stream's first entry is newer than the group's last delivered id, the entries in between were
# trimmed before the group read them: (entries-added - length) left the stream, of which the group
# had read `entries-read`. SETID then records the group as having passed them, so they count once.
# XREADGROUP may not block inside a script, so the caller blocks with XREAD on `marks` and reads again.
#
# An empty lane (XLEN 0, the usual state of most of an inbox's ten) is passed over with one cheap call:
# it has nothing to deliver, and its mark is 0-0, since any entry it gets later is new to the group.
# Its group is then made on the first read that finds an entry; entries trimmed away before delivery
# from a lane now empty are counted on that read too (the counters above keep them).
RECEIVE = (
    _PRELUDE
    + """
local group, consumer = ARGV[1], ARGV[2]
local want = tonumber(ARGV[3])
local scope, lease = ARGV[4], ARGV[5]

local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function newer(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  return am > bm or (am == bm and as > bs)
end

local function group_state(key)
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if not groups['err'] then
    for _, flat in ipairs(groups) do
      local state = {}
      for i = 1, #flat, 2 do state[flat[i]] = flat[i + 1] end
      if state['name'] == group then return state end
    end
  end
  redis.call('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM')
  return {['last-delivered-id'] = '0-0', ['entries-read'] = 0, ['lag'] = false}
end

local entries, trimmed, marks = {}, {}, {}
for index, key in ipairs(KEYS) do
  if want <= 0 then break end
  local state, last = nil, '0-0'
  if redis.call('XLEN', key) > 0 then
    state = group_state(key)
    last = state['last-delivered-id']
  end
  marks[#marks + 1] = last
  if state and state['lag'] ~= 0 then
    local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
    if first and newer(first[1], last) then
      local info = redis.call('XINFO', 'STREAM', key)
      local added, length = nil, 0
      for i = 1, #info, 2 do
        if info[i] == 'entries-added' then added = info[i + 1] end
        if info[i] == 'length' then length = info[i + 1] end
      end
      if added then
        local gone = added - length
        local read = state['entries-read']
        if not read and last == '0-0' then read = 0 end
        if not read then
          trimmed[#trimmed + 1] = index
          trimmed[#trimmed + 1] = -1
        elseif gone > read then
          trimmed[#trimmed + 1] = index
          trimmed[#trimmed + 1] = gone - read
        end
        redis.pcall('XGROUP', 'SETID', key, group, last, 'ENTRIESREAD', gone)
      end
    end
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', key, '>')
    if reply then
      for _, entry in ipairs(reply[1][2]) do
        entries[#entries + 1] = {index, entry[1], entry[2], claim(scope, consumer, lease, entry[2])}
        want = want - 1
      end
    end
  end
end
return {entries, trimmed, marks}
"""
)

# XAUTOCLAIM does not return delivery counts, so the script reads each claimed entry's count with
# XPENDING in the same atomic step: one round trip, and no other consumer can claim in between.
# It follows the XAUTOCLAIM cursor until `count` entries are claimed or the pending list is scanned.
# Pending entries whose stream entry was trimmed are dropped by XAUTOCLAIM and counted.
# KEYS[1]: the stream. ARGV: group, consumer, min idle ms, count, claim scope ('' for none), lease ms.
# Returns {{entry id, flat fields, deliveries, claim status}, ...}, trimmed count}.
RECLAIM = (
    _PRELUDE
    + """
local group, consumer = ARGV[1], ARGV[2]
local count = tonumber(ARGV[4])
local scope, lease = ARGV[5], ARGV[6]
local cursor = '0-0'
local claimed, gone = {}, 0
repeat
  local reply = redis.call(
    'XAUTOCLAIM', KEYS[1], group, consumer, ARGV[3], cursor, 'COUNT', count - #claimed)
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do
    if entry then
      local pending = redis.call('XPENDING', KEYS[1], group, entry[1], entry[1], 1)
      local deliveries = 1
      if pending[1] then deliveries = pending[1][4] end
      claimed[#claimed + 1] = {entry[1], entry[2], deliveries, claim(scope, consumer, lease, entry[2])}
    else
      gone = gone + 1
    end
  end
  if reply[3] then gone = gone + #reply[3] end
until cursor == '0-0' or #claimed >= count
return {claimed, gone}
"""
)

# One batch's outcome, in order: records appended, claims marked done, claims released (if still the
# owner's), entries acknowledged. One reply instead of one per command.
# ARGV: done ms, owner, group, #done, #released, #ack streams, #records, then per ack stream its id
# count and ids, then per record: trim kind ('', 'MAXLEN' or 'MINID'), trim value, field count, fields.
# KEYS: done claim keys, released claim keys, ack streams, record streams, in that order.
SETTLE = """
local done_ms, owner, group = ARGV[1], ARGV[2], ARGV[3]
local n_done, n_released = tonumber(ARGV[4]), tonumber(ARGV[5])
local n_acks, n_records = tonumber(ARGV[6]), tonumber(ARGV[7])
local key, arg = 1, 8
local ack_streams = {}
for i = 1, n_acks do ack_streams[i] = KEYS[n_done + n_released + i] end
local ack_ids = {}
for i = 1, n_acks do
  local count = tonumber(ARGV[arg])
  local ids = {}
  for j = 1, count do ids[j] = ARGV[arg + j] end
  ack_ids[i] = ids
  arg = arg + count + 1
end
for i = 1, n_records do
  local stream = KEYS[n_done + n_released + n_acks + i]
  local kind, value, count = ARGV[arg], ARGV[arg + 1], tonumber(ARGV[arg + 2])
  local fields = {unpack(ARGV, arg + 3, arg + 2 + count)}
  if kind == '' then
    redis.call('XADD', stream, '*', unpack(fields))
  else
    redis.call('XADD', stream, kind, '~', value, '*', unpack(fields))
  end
  arg = arg + 3 + count
end
for i = 1, n_done do
  redis.call('SET', KEYS[key], '+done', 'PX', done_ms)
  key = key + 1
end
for i = 1, n_released do
  if redis.call('GET', KEYS[key]) == owner then redis.call('DEL', KEYS[key]) end
  key = key + 1
end
for i = 1, n_acks do
  local ids = ack_ids[i]
  for first = 1, #ids, 1000 do  -- unpack has a stack limit
    redis.call('XACK', ack_streams[i], group, unpack(ids, first, math.min(first + 999, #ids)))
  end
end
return 1
"""

# Many messages appended at once: five arguments per message instead of a whole XADD each, since the
# client's command packing is what a pipelined publish spends its time on.
# KEYS: one stream per message. ARGV: trim kind ('', 'MAXLEN' or 'MINID'), trim value, then per message
# its wire fields v, id, type, msg. Returns the entry ids, in order.
PUBLISH = """
local kind, value = ARGV[1], ARGV[2]
local ids = {}
for i, stream in ipairs(KEYS) do
  local at = 3 + (i - 1) * 4
  if kind == '' then
    ids[i] = redis.call('XADD', stream, '*', 'v', ARGV[at], 'id', ARGV[at + 1], 'type', ARGV[at + 2],
      'msg', ARGV[at + 3])
  else
    ids[i] = redis.call('XADD', stream, kind, '~', value, '*', 'v', ARGV[at], 'id', ARGV[at + 1],
      'type', ARGV[at + 2], 'msg', ARGV[at + 3])
  end
end
return ids
"""
