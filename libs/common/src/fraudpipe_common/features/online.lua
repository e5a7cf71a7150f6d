-- fraudpipe online features: one call computes (and records) the stateful features of a
-- whole batch, in order. The semantics are in definition.py; offline.py is the same
-- computation in Python, and tests prove they agree.
--
-- ARGV[1] key prefix   ARGV[2] "1" = dry run (compute only, write nothing)
-- ARGV[3] user-state TTL seconds   ARGV[4] per-transaction record TTL seconds
-- ARGV[5] JSON array of [tx_id, user_id, ts, amount_units, log_amount, country, device, merchant]
-- Returns one string: each transaction's stateful values as little-endian doubles, in order
-- (exact, and decoded by numpy in one step).
--
-- Cost is what bounds the scorer, so Redis is touched as little as possible: one HMGET per
-- replay bucket for the batch's replay records, one MGET for its users' states, then one SET per
-- user and one HSET per replay bucket. A user's whole state is one MessagePack value (doubles
-- kept exactly), decoded once per batch however many of the user's transactions the batch holds.
--
-- Replay records: the first result of each transaction, as a field (tx_id) of a hash per minute
-- of the transaction's timestamp, '<prefix>txr:<minute>', which expires ARGV[4] seconds after
-- its last write: hundreds of fields written and read in one call each, where a key per
-- transaction cost a SET with its expiry (the bucket follows from the transaction itself, so a
-- replay finds it).
--
-- User state: {n, mean, m2, last_ts (or false), countries = {country: count},
--              devices, merchants = every id seen, each followed by a NUL ("\0a\0b\0": ids never
--                        hold a NUL, so a plain find is an exact membership test, and the
--                        state stays one string to decode however many the user has),
--              events = {ts, units, country, device, ts, ...} (the last 24 h in arrival order,
--                        flat: one table to decode, not one per event)}

local prefix = ARGV[1]
local dry = ARGV[2] == '1'
local user_ttl = tonumber(ARGV[3])
local tx_ttl = tonumber(ARGV[4])
local txs = cjson.decode(ARGV[5])

local DAY, WINDOWS = 86400, {60, 3600, 86400}
local SCALE, NO_PREVIOUS, FLOOR, CLIP = 10000, 1e6, 0.1, 20
local PACKED = '<' .. string.rep('d', 15)  -- the 15 stateful features, STATEFUL_FEATURES order

-- Byte-wise string order (Lua's < follows the C locale's collation, which may differ).
local function bytes_less(a, b)
  local la, lb = #a, #b
  for i = 1, math.min(la, lb) do
    local ca, cb = string.byte(a, i), string.byte(b, i)
    if ca ~= cb then return ca < cb end
  end
  return la < lb
end

-- MGET in slices: unpack() of thousands of arguments would overflow Lua's C stack.
local function mget(keys)
  local values = {}
  for first = 1, #keys, 1000 do
    local last = math.min(first + 999, #keys)
    local part = redis.call('MGET', unpack(keys, first, last))
    for j = 1, #part do values[first + j - 1] = part[j] end
  end
  return values
end

local function user_key(user) return prefix .. 'u:{' .. user .. '}' end

local function fresh_state()
  return {n = 0, mean = 0, m2 = 0, last_ts = false,
          countries = {}, devices = '\0', merchants = '\0', events = {}}
end

-- A set of ids as the state keeps it; the first layout kept {id: 1} tables.
local function id_string(ids)
  if type(ids) == 'string' then return ids end
  local out = {'\0'}
  for id in pairs(ids) do out[#out + 1] = id .. '\0' end
  return table.concat(out)
end

local function has(ids, id) return string.find(ids, '\0' .. id .. '\0', 1, true) ~= nil end

-- The batch's replay buckets and users, each fetched once.
local buckets, bucket_keys, row_bucket, users, user_keys = {}, {}, {}, {}, {}
for i, t in ipairs(txs) do
  local key = prefix .. 'txr:' .. math.floor(t[3] / 60)
  local bucket = buckets[key]
  if bucket == nil then
    bucket = {fields = {}, rows = {}, written = {}}
    buckets[key] = bucket
    bucket_keys[#bucket_keys + 1] = key
  end
  row_bucket[i] = bucket
  bucket.fields[#bucket.fields + 1] = t[1]
  bucket.rows[#bucket.rows + 1] = i
  if users[t[2]] == nil then
    users[t[2]] = false
    user_keys[#user_keys + 1] = t[2]
  end
end
local known = {}
for _, key in ipairs(bucket_keys) do
  local bucket = buckets[key]
  for first = 1, #bucket.fields, 1000 do  -- unpack() of thousands would overflow the C stack
    local last = math.min(first + 999, #bucket.fields)
    local values = redis.call('HMGET', key, unpack(bucket.fields, first, last))
    for j = 1, last - first + 1 do
      if values[j] then known[bucket.rows[first + j - 1]] = values[j] end
    end
  end
end
local blobs = {}
for j, user in ipairs(user_keys) do blobs[j] = user_key(user) end
blobs = mget(blobs)
for j, user in ipairs(user_keys) do
  local blob = blobs[j]
  local s = blob and cmsgpack.unpack(blob) or fresh_state()
  s.devices, s.merchants = id_string(s.devices), id_string(s.merchants)
  users[user] = s
end

local out, done, touched = {}, {}, {}
for i, t in ipairs(txs) do
  local tx_id, user, ts, units, x = t[1], t[2], t[3], t[4], t[5]
  local country, device, merchant = t[6], t[7], t[8]
  local previous = known[i] or done[tx_id]
  if previous then
    out[i] = previous
  else
    local s = users[user]
    local n, mean, m2, last_ts = s.n, s.mean, s.m2, s.last_ts

    local z = 0
    if n >= 2 then
      local std = math.max(math.sqrt(m2 / (n - 1)), FLOOR)
      z = math.min(math.max((x - mean) / std, -CLIP), CLIP)
    end
    local since = NO_PREVIOUS
    if last_ts then since = math.max(ts - last_ts, 0) end

    local home, best = nil, -1
    for c, k in pairs(s.countries) do
      if k > best or (k == best and bytes_less(c, home)) then home, best = c, k end
    end
    local mismatch = 0
    if home and country ~= home then mismatch = 1 end
    local new_country = s.countries[country] == nil and 1 or 0
    local new_device = has(s.devices, device) and 0 or 1
    local new_merchant = has(s.merchants, merchant) and 0 or 1

    -- The day's events up to this one's time (an earlier arrival may carry a later ts), plus
    -- this one; windows of 1 min, 1 h and 24 h (WINDOWS), unrolled: this loop is most of the
    -- script's time.
    local cutoff, minute, hour = ts - DAY, ts - WINDOWS[1], ts - WINDOWS[2]
    local c1, c2, c3, s1, s2, s3 = 1, 1, 1, units, units, units
    local n_countries, n_devices, expired = 1, 1, 0
    local events = s.events
    if #events > 0 then
      local countries, devices = {[country] = true}, {[device] = true}
      for e = 1, #events, 4 do
        local ets = events[e]
        if ets <= cutoff then
          expired = expired + 1
        elseif ets <= ts then
          local u = events[e + 1]
          c3, s3 = c3 + 1, s3 + u
          if ets > hour then
            c2, s2 = c2 + 1, s2 + u
            if ets > minute then c1, s1 = c1 + 1, s1 + u end
          end
          local c, d = events[e + 2], events[e + 3]
          if not countries[c] then countries[c] = true; n_countries = n_countries + 1 end
          if not devices[d] then devices[d] = true; n_devices = n_devices + 1 end
        end
      end
    end

    local result = struct.pack(PACKED, n, z, since, c1, c2, c3, s1 / SCALE, s2 / SCALE,
                               s3 / SCALE, n_countries, n_devices, new_merchant, new_device,
                               new_country, mismatch)
    out[i] = result

    if not dry then
      done[tx_id] = result
      if expired > 0 then  -- rebuilt only when something left the day
        local kept, k = {}, 0
        for e = 1, #events, 4 do
          if events[e] > cutoff then
            kept[k + 1], kept[k + 2], kept[k + 3], kept[k + 4] =
              events[e], events[e + 1], events[e + 2], events[e + 3]
            k = k + 4
          end
        end
        events = kept
        s.events = kept
      end
      local k = #events
      events[k + 1], events[k + 2], events[k + 3], events[k + 4] = ts, units, country, device
      local n1 = n + 1
      local delta = x - mean
      local mean1 = mean + delta / n1
      s.n, s.mean, s.m2, s.last_ts = n1, mean1, m2 + delta * (x - mean1), ts
      s.countries[country] = (s.countries[country] or 0) + 1
      if new_device == 1 then s.devices = s.devices .. device .. '\0' end
      if new_merchant == 1 then s.merchants = s.merchants .. merchant .. '\0' end
      touched[user] = true
      local written = row_bucket[i].written
      written[#written + 1] = tx_id
      written[#written + 1] = result
    end
  end
end
for user in pairs(touched) do
  redis.call('SET', user_key(user), cmsgpack.pack(users[user]), 'EX', user_ttl)
end
for _, key in ipairs(bucket_keys) do
  local written = buckets[key].written
  if #written > 0 then
    for first = 1, #written, 1000 do
      redis.call('HSET', key, unpack(written, first, math.min(first + 999, #written)))
    end
    redis.call('EXPIRE', key, tx_ttl)
  end
end
return table.concat(out)
