# mutants.py: the planted bugs of scripts/tools/mutation-pass, one per entry:
# (id, file, exact text, replacement, what the bug is). The texts must occur
# once in their file; update them when the code moves.
MUTANTS = [
 ("M01", "src/backend/cpu/cpu.c", "float eps = (float)be->m->hp.rms_eps;", "float eps = a->weight == be->m->output_norm ? 1e-6f : (float)be->m->hp.rms_eps;", "cpu final RMSNorm eps hard-coded 1e-6"),
 ("M02", "src/engine/sampler.c", "if ((double)cands[i].logit >= threshold)", "if ((double)cands[i].logit > threshold)", "min-p keeps p > threshold instead of >="),
 ("M03", "src/backend/cpu/cpu.c", "v[2 * j + 1] = x0 * s[j] + x1 * c[j];", "v[2 * j + 1] = x0 * s[j] - x1 * c[j];", "cpu RoPE: wrong sign in the second component"),
 ("M04", "src/backend/backend_common.c", "double p = (double)pos / hp->rope_scale_factor;", "double p = (double)pos * hp->rope_scale_factor;", "linear RoPE scaling multiplies instead of divides"),
 ("M05", "src/backend/backend_common.c", "if (m->rope_freqs) freq /= (double)m->rope_freqs[j];", "if (m->rope_freqs) freq *= (double)m->rope_freqs[j];", "cpu rope_freqs multiplies instead of divides"),
 ("M06", "src/backend/backend_common.c", "return (size_t)(h / (hp->n_head / hp->n_head_kv)) * (size_t)hp->head_dim;", "return (size_t)(h % hp->n_head_kv) * (size_t)hp->head_dim;", "GQA: query head mapped to KV head by modulo"),
 ("M07", "src/backend/cpu/cpu.c", "float scale = 1.0f / sqrtf((float)hd);", "float scale = 1.0f / (float)hd;", "cpu attention scale 1/head_dim"),
 ("M08", "src/backend/cpu/cpu.c", "g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];", "g[k] = g[k] / (1.0f + expf(g[k])) * u[k];", "cpu SiLU sign"),
 ("M09", "src/backend/cpu/cpu.c", "hd, job->rows[i].pos + 1, scale,", "hd, job->rows[i].pos, scale,", "cpu attention skips the current position"),
 ("M10", "src/engine/sampler.c", "if (mass >= target) {", "if (mass > target) {", "top-p: > instead of >="),
 ("M11", "src/engine/sampler.c", "logits[id] = logits[id] > 0.0f ? logits[id] / penalty : logits[id] * penalty;", "logits[id] = logits[id] > 0.0f ? logits[id] * penalty : logits[id] / penalty;", "repeat penalty inverted"),
 ("M12", "src/engine/sampler.c", "cands[i].logit = (float)(((double)cands[i].logit - best) / t);", "cands[i].logit = (float)(((double)cands[i].logit - best) * t);", "temperature multiplies"),
 ("M13", "src/text/jinja/values.c", "case JV_STR: return v->u.s->len > 0;", "case JV_STR: return true;", "jinja: empty string is truthy"),
 ("M14", "src/text/jinja/eval.c", "*out = v_bool(i0 == len - 1);", "*out = v_bool(i0 == len);", "jinja: loop.last off by one"),
 ("M15", "src/text/jinja/lexer.c", "} else if (trim_newline && i < lx->len && lx->src[i] == '\\n') {", "} else if (false && trim_newline && i < lx->len && lx->src[i] == '\\n') {", "jinja: trim_blocks ignored"),
 ("M16", "src/text/tokenizer_bpe.c", "return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);", "return a->rank < b->rank || (a->rank == b->rank && a->pos > b->pos);", "BPE: rightmost pair first on equal rank"),
 ("M17", "src/text/tokenizer_spm.c", "return a->score > b->score || (a->score == b->score && a->left < b->left);", "return a->score > b->score || (a->score == b->score && a->left > b->left);", "SPM: rightmost bigram first on equal score"),
 ("M18", "src/base/utf8.c", "if (lead == 0xE0) *lo = 0xA0;", "if (lead == 0xE0) *lo = 0x80;", "UTF-8: overlong 3-byte forms accepted"),
 ("M19", "src/format/quant.c", "y[j] = d * (float)((qs[j] & 0x0f) - 8);", "y[j] = d * (float)((qs[j] & 0x0f) - 7);", "Q4_0 low nibble offset 7"),
 ("M20", "src/text/tokenizer.c", "if (t->ends[node][mode] >= 0) best = t->ends[node][mode];", "if (best < 0 && t->ends[node][mode] >= 0) best = t->ends[node][mode];", "special tokens: shortest match instead of longest"),
 ("M21", "src/backend/cpu/cpu.c", "float scale = 1.0f / sqrtf(ss / (float)d + eps);", "float scale = 1.0f / sqrtf(ss / (float)(d - 1) + eps);", "cpu RMSNorm divides by d - 1"),
 ("M22", "src/text/jinja/values.c", "if (depth > JJ_MAX_VALUE_DEPTH) return jj_fail(c, pos, \"values nested deeper than %d to compare\", JJ_MAX_VALUE_DEPTH);", "", "jinja: no depth limit in ==  (issue 9 item 1)"),
 ("M23", "src/text/jinja/filters.c", "bool take_right = reverse ? k < 0 : k > 0;", "bool take_right = reverse ? k <= 0 : k >= 0;", "sort not stable (ties take the right item)"),
 ("M24", "src/cli/main.c", "    failed = ferror(stdout) || failed;\n", "", "lost stdout write not reported (issue 9 item 4)"),
]
