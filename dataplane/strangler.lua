-- nginx's MurmurHash2 (src/core/ngx_murmurhash.c: 32 bits, seed 0) as an HAProxy converter,
-- so an HAProxy exported by `strangler export haproxy` puts users in the cohorts nginx's
-- split_clients and Strangler's router (router/balance.py) put them in.
--   http-request set-var(txn.h) var(txn.key),lua.strangler_hash(<salt>)
-- hashes "<salt>:<key>", as split_clients "${salt}:${key}" does. Lua 5.3+: integer
-- multiplication wraps modulo 2^64, so masking keeps exactly the 32-bit C arithmetic.

local M = 0x5bd1e995
local MASK = 0xffffffff

local function mul(a, b)
    return (a * b) & MASK
end

local function murmur2(s)
    local len = #s
    local h = len & MASK
    local i = 1
    while len - i + 1 >= 4 do
        local b1, b2, b3, b4 = s:byte(i, i + 3)
        local k = b1 | (b2 << 8) | (b3 << 16) | (b4 << 24)
        k = mul(k, M)
        k = k ~ (k >> 24)
        k = mul(k, M)
        h = mul(h, M) ~ k
        i = i + 4
    end
    local rest = len - i + 1
    if rest == 3 then h = h ~ (s:byte(i + 2) << 16) end
    if rest >= 2 then h = h ~ (s:byte(i + 1) << 8) end
    if rest >= 1 then h = mul(h ~ s:byte(i), M) end
    h = h ~ (h >> 13)
    h = mul(h, M)
    return h ~ (h >> 15)
end

core.register_converters("strangler_hash", function(key, salt)
    return murmur2(salt .. ":" .. key)
end)
