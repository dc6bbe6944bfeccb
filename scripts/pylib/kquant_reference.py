#!/usr/bin/env python3
"""A numpy port of llama.cpp's reference K-quant quantizers (no importance
matrix): quantize_row_q2_K_ref, quantize_row_q3_K_ref, quantize_row_q4_K_ref,
quantize_row_q5_K_ref, quantize_row_q6_K_ref and their helpers make_qkx2_quants /
make_q3_quants / make_qx_quants (ggml/src/ggml-quants.c).

The `gguf` Python package dequantizes K-quants but cannot quantize them, so
this port supplies the reference round-trip RMSE that greta's quantizers are
held to (tests/fixtures/quant/rmse_reference.txt). It follows the C code's
float32 arithmetic step by step (sequential float32 sums via
np.add.accumulate, round-half-even nearest_int) and emits real ggml blocks,
which are then dequantized by gguf.quants.dequantize, so the block layout is
checked by llama.cpp's own reader.

Usage as a module: roundtrip("Q4_K", x) -> dequantized float32 array.
"""
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

F = np.float32
QK_K = 256


def seqsum(a):
    """Sequential float32 sum, as a C loop `s += a[i]` starting at 0."""
    a = np.asarray(a, dtype=F)
    return F(np.add.accumulate(a, dtype=F)[-1]) if a.size else F(0)


def nearest_int(v):
    return np.rint(np.asarray(v, dtype=F)).astype(np.int64)


def f16(v):
    return np.float16(F(v))


def nearest_int_wrapping(v):
    """ggml's nearest_int bit for bit, also where |v| >= 2^22 and its
    magic-number rounding wraps: (bits(v + 12582912f) & 0x7fffff) - 0x400000."""
    biased = np.array([F(v) + F(12582912.0)], dtype=F)
    return int((int(biased.view(np.uint32)[0]) & 0x7FFFFF) - 0x400000)


def make_qkx2_quants(nmax, x, weights, rmin, rdelta, nstep, use_mad=False):
    """Returns (scale, the_min, L) as llama.cpp's make_qkx2_quants."""
    x = x.astype(F)
    w = weights.astype(F)
    mn = F(min(F(0), x.min()))
    mx = F(x.max())
    # sum_w and sum_x start from element 0 in C: same as a sequential sum.
    sum_w = seqsum(w)
    sum_x = seqsum(w * x)
    if mx == mn:
        return F(0), F(-mn), np.zeros(x.size, dtype=np.int64)
    iscale = F(F(nmax) / F(mx - mn))
    scale = F(F(1) / iscale)
    L = np.clip(nearest_int(iscale * (x - mn)), 0, nmax)
    diff = F(scale) * L.astype(F) + mn - x
    best_error = seqsum(w * (np.abs(diff) if use_mad else diff * diff))
    for step in range(nstep + 1):
        iscale = F(F(F(rmin) + F(F(rdelta) * F(step)) + F(nmax)) / F(mx - mn))
        laux = np.clip(nearest_int(iscale * (x - mn)), 0, nmax)
        lf = laux.astype(F)
        sum_l = seqsum(w * lf)
        sum_l2 = seqsum(w * lf * lf)
        sum_xl = seqsum(w * lf * x)
        D = F(F(sum_w * sum_l2) - F(sum_l * sum_l))
        if D > 0:
            this_scale = F(F(F(sum_w * sum_xl) - F(sum_x * sum_l)) / D)
            this_min = F(F(F(sum_l2 * sum_x) - F(sum_l * sum_xl)) / D)
            if this_min > 0:
                this_min = F(0)
                this_scale = F(sum_xl / sum_l2)
            diff = this_scale * lf + this_min - x
            cur_error = seqsum(w * (np.abs(diff) if use_mad else diff * diff))
            if cur_error < best_error:
                L = laux
                best_error = cur_error
                scale = this_scale
                mn = this_min
    return F(scale), F(-mn), L


def make_qx_quants(nmax, x):
    """make_qx_quants with rmse_type=1 and no weights (used by Q6_K)."""
    x = x.astype(F)
    ax = np.abs(x)
    amax = ax.max()
    if amax < F(1e-15):
        return F(0), np.zeros(x.size, dtype=np.int64)
    mx = x[int(np.argmax(ax))]  # first index of the largest magnitude
    iscale = F(F(-nmax) / mx)
    w = x * x
    l = np.clip(nearest_int(iscale * x), -nmax, nmax - 1)
    L = l + nmax
    lf = l.astype(F)
    sumlx = seqsum(w * x * lf)
    suml2 = seqsum(w * lf * lf)
    scale = F(sumlx / suml2) if suml2 else F(0)
    best = F(scale * sumlx)
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = F(F(-F(F(nmax) + F(F(0.1) * F(step)))) / mx)
        l = np.clip(nearest_int(iscale * x), -nmax, nmax - 1)
        lf = l.astype(F)
        sumlx = seqsum(w * x * lf)
        suml2 = seqsum(w * lf * lf)
        if suml2 > 0 and F(sumlx * sumlx) > F(best * suml2):
            L = l + nmax
            scale = F(sumlx / suml2)
            best = F(scale * sumlx)
    return scale, L


def pack_k4_scales(ls, lm):
    out = np.zeros(12, dtype=np.uint8)
    for j in range(8):
        if j < 4:
            out[j] = ls[j]
            out[j + 4] = lm[j]
        else:
            out[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
            out[j - 4] |= (ls[j] >> 4) << 6
            out[j] |= (lm[j] >> 4) << 6
    return out


def k4_requantize(x, d16, dmin16, ls, lm, nmax, L):
    """Final levels; a sub-block whose 6-bit scale is 0 keeps the levels
    make_qkx2_quants chose (as the C code, which reuses its L array)."""
    L = L.copy()
    for j in range(8):
        d = F(F(d16) * F(ls[j]))
        if d == 0:
            continue
        dm = F(F(dmin16) * F(lm[j]))
        seg = x[32 * j:32 * j + 32]
        L[32 * j:32 * j + 32] = np.clip(nearest_int((seg + dm) / d), 0, nmax)
    return L


def quantize_k4_block(x, nmax, rmin, rdelta, nstep):
    """Shared part of Q4_K (nmax 15) and Q5_K (nmax 31): scales, mins, L."""
    scales = np.zeros(8, dtype=F)
    mins = np.zeros(8, dtype=F)
    L = np.zeros(QK_K, dtype=np.int64)
    for j in range(8):
        seg = x[32 * j:32 * j + 32]
        av_x = F(np.sqrt(F(seqsum(seg * seg) / F(32))))
        weights = av_x + np.abs(seg)
        scales[j], mins[j], L[32 * j:32 * j + 32] = make_qkx2_quants(nmax, seg, weights, rmin, rdelta, nstep)
    max_scale = F(max(F(0), scales.max()))
    max_min = F(max(F(0), mins.max()))
    inv_scale = F(F(63) / max_scale) if max_scale > 0 else F(0)
    inv_min = F(F(63) / max_min) if max_min > 0 else F(0)
    ls = np.minimum(63, nearest_int(inv_scale * scales) & 0xFF).astype(np.uint8)
    lm = np.minimum(63, nearest_int(inv_min * mins) & 0xFF).astype(np.uint8)
    d16 = f16(F(max_scale / F(63)))
    dmin16 = f16(F(max_min / F(63)))
    L = k4_requantize(x, d16, dmin16, ls, lm, nmax, L)
    head = np.concatenate([np.array([d16, dmin16], dtype=np.float16).view(np.uint8), pack_k4_scales(ls, lm)])
    return head, L


def quantize_q4_k(x):
    out = []
    for b in range(x.size // QK_K):
        head, L = quantize_k4_block(x[b * QK_K:(b + 1) * QK_K], 15, -1.0, 0.1, 20)
        qs = np.zeros(128, dtype=np.uint8)
        for c in range(4):
            qs[32 * c:32 * c + 32] = L[64 * c:64 * c + 32] | (L[64 * c + 32:64 * c + 64] << 4)
        out.append(np.concatenate([head, qs]))
    return np.concatenate(out)


def quantize_q5_k(x):
    out = []
    for b in range(x.size // QK_K):
        head, L = quantize_k4_block(x[b * QK_K:(b + 1) * QK_K], 31, -0.5, 0.1, 15)
        qh = np.zeros(32, dtype=np.uint8)
        ql = np.zeros(128, dtype=np.uint8)
        for c in range(4):
            l1 = L[64 * c:64 * c + 32]
            l2 = L[64 * c + 32:64 * c + 64]
            qh |= ((l1 > 15).astype(np.uint8) << (2 * c)) | ((l2 > 15).astype(np.uint8) << (2 * c + 1))
            ql[32 * c:32 * c + 32] = (l1 & 15) | ((l2 & 15) << 4)
        out.append(np.concatenate([head, qh, ql]))
    return np.concatenate(out)


def quantize_q6_k(x):
    out = []
    for b in range(x.size // QK_K):
        xb = x[b * QK_K:(b + 1) * QK_K].astype(F)
        scales = np.zeros(16, dtype=F)
        L = np.zeros(QK_K, dtype=np.int64)
        max_scale = F(0)
        max_abs = F(0)
        for ib in range(16):
            scales[ib], L[16 * ib:16 * ib + 16] = make_qx_quants(32, xb[16 * ib:16 * ib + 16])
            if abs(scales[ib]) > max_abs:
                max_abs = F(abs(scales[ib]))
                max_scale = scales[ib]
        if max_abs < F(1e-15):
            out.append(np.zeros(210, dtype=np.uint8))
            continue
        iscale = F(F(-128) / max_scale)
        d16 = f16(F(F(1) / iscale))
        sc = np.minimum(127, nearest_int(iscale * scales)).astype(np.int8)
        for j in range(16):
            d = F(F(d16) * F(sc[j]))
            if d == 0:
                continue
            L[16 * j:16 * j + 16] = np.clip(nearest_int(xb[16 * j:16 * j + 16] / d), -32, 31) + 32
        ql = np.zeros(128, dtype=np.uint8)
        qh = np.zeros(64, dtype=np.uint8)
        for h in range(2):
            Lh = L[128 * h:128 * h + 128]
            q1, q2, q3, q4 = Lh[0:32], Lh[32:64], Lh[64:96], Lh[96:128]
            ql[64 * h:64 * h + 32] = (q1 & 15) | ((q3 & 15) << 4)
            ql[64 * h + 32:64 * h + 64] = (q2 & 15) | ((q4 & 15) << 4)
            qh[32 * h:32 * h + 32] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)
        out.append(np.concatenate([ql, qh, sc.view(np.uint8), np.array([d16], dtype=np.float16).view(np.uint8)]))
    return np.concatenate(out)


def pack_2bit(L):
    """64 bytes: byte 32*h + l holds L[128h + l + 32k] at bits 2k."""
    qs = np.zeros(64, dtype=np.uint8)
    for h in range(2):
        Lh = L[128 * h:128 * h + 128].astype(np.uint8)
        qs[32 * h:32 * h + 32] = Lh[0:32] | (Lh[32:64] << 2) | (Lh[64:96] << 4) | (Lh[96:128] << 6)
    return qs


def quantize_q2_k(x):
    """quantize_row_q2_K_ref: scales[16] | qs[64] | d | dmin."""
    out = []
    for b in range(x.size // QK_K):
        xb = x[b * QK_K:(b + 1) * QK_K].astype(F)
        scales = np.zeros(16, dtype=F)
        mins = np.zeros(16, dtype=F)
        L = np.zeros(QK_K, dtype=np.int64)
        for j in range(16):
            seg = xb[16 * j:16 * j + 16]
            scales[j], mins[j], L[16 * j:16 * j + 16] = make_qkx2_quants(3, seg, np.abs(seg), -0.5, 0.1, 15,
                                                                         use_mad=True)
        max_scale = F(max(F(0), scales.max()))
        max_min = F(max(F(0), mins.max()))
        sc = np.zeros(16, dtype=np.int64)
        d16 = f16(0)
        dmin16 = f16(0)
        if max_scale > 0:
            iscale = F(F(15) / max_scale)
            sc = nearest_int(iscale * scales) & 0xFF
            d16 = f16(F(max_scale / F(15)))
        if max_min > 0:
            iscale = F(F(15) / max_min)
            sc = (sc | (nearest_int(iscale * mins) << 4)) & 0xFF
            dmin16 = f16(F(max_min / F(15)))
        for j in range(16):
            d = F(F(d16) * F(sc[j] & 0xF))
            if d == 0:
                continue
            dm = F(F(dmin16) * F(sc[j] >> 4))
            seg = xb[16 * j:16 * j + 16]
            L[16 * j:16 * j + 16] = np.clip(nearest_int((seg + dm) / d), 0, 3)
        out.append(np.concatenate([sc.astype(np.uint8), pack_2bit(L),
                                   np.array([d16, dmin16], dtype=np.float16).view(np.uint8)]))
    return np.concatenate(out)


def make_q3_quants(nmax, x):
    """make_q3_quants with do_rmse = true: (scale, L) with L = level + nmax
    (L = 0 for an all-zero group, as the C code leaves it)."""
    x = x.astype(F)
    ax = np.abs(x)
    amax = ax.max()
    if amax < F(1e-15):
        return F(0), np.zeros(x.size, dtype=np.int64)
    mx = x[int(np.argmax(ax))]
    iscale = F(F(-nmax) / mx)
    L = [int(v) for v in np.clip(nearest_int(iscale * x), -nmax, nmax - 1)]
    sumlx = F(0)
    suml2 = F(0)
    for i in range(x.size):
        w = F(x[i] * x[i])
        sumlx = F(sumlx + F(F(w * x[i]) * F(L[i])))
        suml2 = F(suml2 + F(F(w * F(L[i])) * F(L[i])))
    for _ in range(5):
        n_changed = 0
        for i in range(x.size):
            w = F(x[i] * x[i])
            slx = F(sumlx - F(F(w * x[i]) * F(L[i])))
            if slx > 0:
                sl2 = F(suml2 - F(F(w * F(L[i])) * F(L[i])))
                with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                    q = F(F(x[i] * sl2) / slx)
                new_l = max(-nmax, min(nmax - 1, nearest_int_wrapping(q)))
                if new_l != L[i]:
                    slx = F(slx + F(F(w * x[i]) * F(new_l)))
                    sl2 = F(sl2 + F(F(w * F(new_l)) * F(new_l)))
                    if sl2 > 0 and F(F(slx * slx) * suml2) > F(F(sumlx * sumlx) * sl2):
                        L[i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if not n_changed:
            break
    scale = F(sumlx / suml2) if suml2 > 0 else F(0)
    return scale, np.array(L, dtype=np.int64) + nmax


def quantize_q3_k(x):
    """quantize_row_q3_K_ref: hmask[32] | qs[64] | scales[12] | d."""
    out = []
    for b in range(x.size // QK_K):
        xb = x[b * QK_K:(b + 1) * QK_K].astype(F)
        scales = np.zeros(16, dtype=F)
        L = np.zeros(QK_K, dtype=np.int64)
        max_scale = F(0)
        amax = F(0)
        for j in range(16):
            scales[j], L[16 * j:16 * j + 16] = make_q3_quants(4, xb[16 * j:16 * j + 16])
            if abs(scales[j]) > amax:
                amax = F(abs(scales[j]))
                max_scale = scales[j]
        sc = np.zeros(12, dtype=np.uint8)
        d16 = f16(0)
        if max_scale != 0:
            iscale = F(F(-32) / max_scale)
            for j in range(16):
                lv = int(max(-32, min(31, int(nearest_int(F(iscale * scales[j])))))) + 32
                if j < 8:
                    sc[j] = lv & 0xF
                else:
                    sc[j - 8] |= (lv & 0xF) << 4
                sc[j % 4 + 8] |= (lv >> 4) << (2 * (j // 4))
            d16 = f16(F(F(1) / iscale))
        for j in range(16):
            low = int(sc[j] & 0xF) if j < 8 else int(sc[j - 8] >> 4)
            s = (low | (((int(sc[8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32
            d = F(F(d16) * F(s))
            if d == 0:
                continue
            L[16 * j:16 * j + 16] = np.clip(nearest_int(xb[16 * j:16 * j + 16] / d), -4, 3) + 4
        hmask = np.zeros(32, dtype=np.uint8)
        for j in range(QK_K):
            if L[j] > 3:
                hmask[j % 32] |= 1 << (j // 32)
                L[j] -= 4
        out.append(np.concatenate([hmask, pack_2bit(L), sc, np.array([d16], dtype=np.float16).view(np.uint8)]))
    return np.concatenate(out)


QUANTIZERS = {"Q2_K": quantize_q2_k, "Q3_K": quantize_q3_k, "Q4_K": quantize_q4_k, "Q5_K": quantize_q5_k, "Q6_K": quantize_q6_k}


def roundtrip(name, x):
    blocks = QUANTIZERS[name](np.asarray(x, dtype=F).reshape(-1))
    return dequantize(blocks.astype(np.uint8), T[name]).reshape(-1)


if __name__ == "__main__":
    rng = np.random.default_rng(1)
    x = rng.standard_normal(4 * QK_K).astype(F)
    for name in QUANTIZERS:
        y = roundtrip(name, x)
        print(name, float(np.sqrt(np.mean((x.astype(np.float64) - y) ** 2))))
