/* pretokenize.c: the byte-level BPE pre-tokenizers, selected by
 * tokenizer.ggml.pre.
 *
 * Each is a sequence of steps as in the Hugging Face tokenizer.json of the
 * model family: regex splits (HF Split with behavior "Isolated": every match
 * and every gap between matches becomes its own piece; Digits and
 * Punctuation are regex splits too) and the ByteLevel step, which maps each
 * byte of a piece to GPT-2's printable code point. A step after ByteLevel
 * (Falcon) sees the mapped text, as in HF. Each step applies to each piece
 * separately, so anchors and lookarounds stop at piece boundaries.
 * Regexes are PCRE2 with UTF + UCP (Unicode properties for \p, \s, \w),
 * compiled once at load. Input is valid UTF-8 (tokenizer.c repairs it). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/utf8.h"
#include "text/tokenizer_internal.h"

/* GPT-2's split (HF ByteLevel with use_regex). */
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* Llama 3 (tokenizer.json of Meta-Llama-3). */
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* Qwen2: as Llama 3 but single digits. */
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* DeepSeek LLM: letters of the cased scripts, ASCII/fullwidth punctuation, CJK. */
static const char RE_DEEPSEEK_LETTERS[] =
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"
    "\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    "\U0001e900-\U0001e943]+";
static const char RE_DEEPSEEK_PUNCT[] = "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+";
static const char RE_DEEPSEEK_CJK[] = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+";
/* HF Punctuation: ASCII punctuation or Unicode P*; "Contiguous" runs. */
static const char RE_PUNCT_RUNS[] = "[\\p{P}$+<=>^`|~]+";
/* llama.cpp's default list has the same class without the backtick. */
static const char RE_PUNCT_RUNS_DEFAULT[] = "[\\p{P}$+<=>^|~]+";

typedef struct {
    const char *names[8]; /* tokenizer.ggml.pre values, NULL-terminated */
    const char *steps[8]; /* regex, or "<bytelevel>", NULL-terminated */
    bool ignore_merges;
} pretok_spec;

#define BYTELEVEL "<bytelevel>"

static const pretok_spec SPECS[] = {
    /* llama.cpp's fallback for files without a pre key. */
    {{"default", NULL},
     {RE_PUNCT_RUNS_DEFAULT, RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", BYTELEVEL, NULL},
     false},
    {{"gpt-2", "gpt2", "mpt", "olmo", "jais", NULL}, {RE_GPT2, BYTELEVEL, NULL}, false},
    /* HF: Digits(individual_digits=true), ByteLevel(use_regex=true). */
    {{"starcoder", "refact", "smollm", "codeshell", NULL}, {"\\p{N}", RE_GPT2, BYTELEVEL, NULL}, false},
    {{"llama-bpe", "llama3", "llama-v3", "falcon3", NULL}, {RE_LLAMA3, BYTELEVEL, NULL}, true},
    {{"dbrx", "smaug-bpe", NULL}, {RE_LLAMA3, BYTELEVEL, NULL}, false},
    {{"qwen2", "stablelm2", "deepseek-r1-qwen", NULL}, {RE_QWEN2, BYTELEVEL, NULL}, false},
    {{"deepseek-llm", NULL},
     {"[\\r\\n]", RE_DEEPSEEK_LETTERS, RE_DEEPSEEK_PUNCT, "\\s+$", RE_DEEPSEEK_CJK, "\\p{N}+", BYTELEVEL, NULL},
     false},
    {{"deepseek-coder", NULL},
     {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_DEEPSEEK_CJK, "\\p{N}", BYTELEVEL, NULL},
     false},
    /* HF: Punctuation(Contiguous), ByteLevel(use_regex=true), Digits(false),
     * Split("[0-9][0-9][0-9]"); the last two see the byte-mapped text. */
    {{"falcon", NULL}, {RE_PUNCT_RUNS, RE_GPT2, BYTELEVEL, "\\p{N}+", "[0-9][0-9][0-9]", NULL}, false},
};

static const pretok_spec *find_spec(const char *name) {
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++) {
        for (int j = 0; SPECS[i].names[j]; j++) {
            if (strcmp(SPECS[i].names[j], name) == 0) return &SPECS[i];
        }
    }
    return NULL;
}

void pretokenizer_free(pretokenizer *pre) {
    for (int i = 0; i < pre->n_steps; i++) {
        if (pre->steps[i].regex) pcre2_code_free((pcre2_code *)pre->steps[i].regex);
        pre->steps[i].regex = NULL;
    }
    pre->n_steps = 0;
}

bool pretokenizer_init(pretokenizer *pre, const char *name, char *err, size_t err_size) {
    memset(pre, 0, sizeof *pre);
    const pretok_spec *spec = find_spec(name);
    if (!spec) {
        char shown[96];
        snprintf(err, err_size, "unknown tokenizer.ggml.pre '%s' (supported: default, gpt-2, llama-bpe, "
                 "smollm, starcoder, refact, qwen2, deepseek-llm, deepseek-coder, falcon, mpt and aliases)",
                 escape_text(name, strlen(name), shown, sizeof shown));
        return false;
    }
    snprintf(pre->name, sizeof pre->name, "%s", name);
    pre->ignore_merges = spec->ignore_merges;
    for (int i = 0; spec->steps[i]; i++) {
        pretok_step *step = &pre->steps[pre->n_steps++];
        if (strcmp(spec->steps[i], BYTELEVEL) == 0) {
            step->kind = PRETOK_BYTELEVEL;
            continue;
        }
        step->kind = PRETOK_SPLIT;
        int code = 0;
        PCRE2_SIZE where = 0;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)spec->steps[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP, &code, &where, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof msg);
            snprintf(err, err_size, "pre-tokenizer '%s': regex %d does not compile at %zu: %s", name, i,
                     (size_t)where, (const char *)msg);
            pretokenizer_free(pre);
            return false;
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
        step->regex = re;
    }
    return true;
}

void piece_list_free(piece_list *pieces) {
    free(pieces->text);
    free(pieces->start);
    free(pieces->len);
    memset(pieces, 0, sizeof *pieces);
}

static bool piece_push(piece_list *pieces, size_t start, size_t len) {
    if (len == 0) return true;
    if (pieces->n == pieces->cap) {
        size_t cap = pieces->cap ? pieces->cap * 2 : 64;
        size_t *s = realloc(pieces->start, cap * sizeof *s);
        if (!s) return false;
        pieces->start = s;
        size_t *l = realloc(pieces->len, cap * sizeof *l);
        if (!l) return false;
        pieces->len = l;
        pieces->cap = cap;
    }
    pieces->start[pieces->n] = start;
    pieces->len[pieces->n] = len;
    pieces->n++;
    return true;
}

/* Length of the UTF-8 character at s (input is valid; 1 for a stray byte). */
static size_t utf8_char_len(const char *s, size_t avail) {
    uint32_t cp;
    int n = avail > 0 ? utf8_decode((const unsigned char *)s, avail, &cp) : 0;
    return n > 0 ? (size_t)n : 1;
}

typedef struct {
    pcre2_match_data *match;
    pcre2_match_context *context;
    pcre2_jit_stack *jit_stack;
} match_state;

/* Splits every piece of `in` by regex into `out` (same text buffer). */
static bool split_step(const pcre2_code *re, match_state *ms, const piece_list *in, piece_list *out, char *err,
                       size_t err_size) {
    for (size_t p = 0; p < in->n; p++) {
        const char *subject = out->text + in->start[p]; /* the buffer moved to out */
        size_t len = in->len[p];
        size_t base = in->start[p];
        size_t pos = 0, gap_start = 0;
        while (pos < len) {
            int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, pos, PCRE2_NO_UTF_CHECK, ms->match, ms->context);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof msg);
                snprintf(err, err_size, "pre-tokenizer regex failed: %s", (const char *)msg);
                return false;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ms->match);
            size_t m_start = ov[0], m_end = ov[1];
            if (m_end == m_start) { /* empty match: step over one character */
                pos = m_start + utf8_char_len(subject + m_start, len - m_start);
                continue;
            }
            if (!piece_push(out, base + gap_start, m_start - gap_start)) goto oom;
            if (!piece_push(out, base + m_start, m_end - m_start)) goto oom;
            gap_start = pos = m_end;
        }
        if (!piece_push(out, base + gap_start, len - gap_start)) goto oom;
    }
    return true;
oom:
    snprintf(err, err_size, "out of memory");
    return false;
}

/* Replaces the text by its byte-level mapping; pieces are remapped. */
static bool bytelevel_step(const uint32_t byte_to_cp[256], const piece_list *in, piece_list *out) {
    /* Each byte maps to a code point below 0x800: at most 2 bytes. */
    out->text = malloc(in->text_len * 2 + 1);
    if (!out->text) return false;
    size_t o = 0;
    for (size_t p = 0; p < in->n; p++) {
        size_t start = o;
        for (size_t i = 0; i < in->len[p]; i++) {
            unsigned char b = (unsigned char)in->text[in->start[p] + i];
            o += (size_t)utf8_encode(byte_to_cp[b], out->text + o);
        }
        if (!piece_push(out, start, o - start)) return false;
    }
    out->text[o] = '\0';
    out->text_len = o;
    return true;
}

bool pretokenize(const pretokenizer *pre, const uint32_t byte_to_cp[256], const char *text, size_t len,
                 piece_list *out, char *err, size_t err_size) {
    piece_list cur = {0};
    memset(out, 0, sizeof *out);
    match_state ms = {0};
    bool ok = false;
    cur.text = malloc(len + 1);
    if (!cur.text) goto oom;
    memcpy(cur.text, text, len);
    cur.text[len] = '\0';
    cur.text_len = len;
    if (!piece_push(&cur, 0, len)) goto oom;

    ms.match = pcre2_match_data_create(16, NULL);
    ms.context = pcre2_match_context_create(NULL);
    ms.jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!ms.match || !ms.context || !ms.jit_stack) goto oom;
    pcre2_jit_stack_assign(ms.context, NULL, ms.jit_stack);

    for (int s = 0; s < pre->n_steps; s++) {
        piece_list next = {0};
        if (pre->steps[s].kind == PRETOK_BYTELEVEL) {
            if (!bytelevel_step(byte_to_cp, &cur, &next)) {
                piece_list_free(&next);
                goto oom;
            }
        } else {
            next.text = cur.text; /* same buffer: move it over */
            next.text_len = cur.text_len;
            cur.text = NULL;
            if (!split_step(pre->steps[s].regex, &ms, &cur, &next, err, err_size)) {
                piece_list_free(&next);
                goto done;
            }
        }
        piece_list_free(&cur);
        cur = next;
    }
    *out = cur;
    memset(&cur, 0, sizeof cur);
    ok = true;
    goto done;
oom:
    snprintf(err, err_size, "out of memory");
done:
    piece_list_free(&cur);
    if (ms.match) pcre2_match_data_free(ms.match);
    if (ms.context) pcre2_match_context_free(ms.context);
    if (ms.jit_stack) pcre2_jit_stack_free(ms.jit_stack);
    return ok;
}
