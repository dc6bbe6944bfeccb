/* test_chat.c: chat templates against transformers' own renderings.
 *
 * tests/fixtures/chat/expected.json (scripts/fixtures/gen_chat_fixtures.py) holds,
 * for each official template text in tests/fixtures/chat/NAME.jinja, what
 * transformers.apply_chat_template-equivalent rendering gave for several
 * conversations (or the error it raised), plus interpreter units and
 * hostile templates. Every comparison is byte for byte. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/chat.h"
#include "support/check.h"
#include "format/gguf.h"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    if (buf) { buf[n] = 0; if (len) *len = (size_t)n; }
    fclose(f);
    return buf;
}

static char *fixture_text(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/chat/%s.jinja", check_repo_dir(), name);
    return read_file(path, NULL);
}

/* Where two strings first differ, for a readable failure. */
static void show_diff(const char *what, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    size_t from = i > 30 ? i - 30 : 0;
    printf("  %s: first difference at byte %zu\n    got:  ", what, i);
    for (size_t k = from; got[k] && k < i + 40; k++) putchar(got[k] == '\n' ? '|' : got[k]);
    printf("\n    want: ");
    for (size_t k = from; want[k] && k < i + 40; k++) putchar(want[k] == '\n' ? '|' : want[k]);
    printf("\n");
}

typedef struct {
    chat_message *msgs;
    size_t n;
} conversation;

static conversation load_conversation(const json_t *arr) {
    conversation c = {0};
    c.n = json_array_size(arr);
    c.msgs = calloc(c.n ? c.n : 1, sizeof(chat_message));
    for (size_t i = 0; i < c.n; i++) {
        const json_t *m = json_array_get(arr, i);
        c.msgs[i].role = json_string_value(json_object_get(m, "role"));
        c.msgs[i].content = json_string_value(json_object_get(m, "content"));
    }
    return c;
}

static const char *opt_str(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Checks one rendering against a reference {"output": ...} or {"error": ...}. */
static void check_result(const char *label, const char *template_text, bool ok, const char *out, const char *err,
                         const json_t *ref) {
    const char *want = opt_str(ref, "output");
    const char *want_err = opt_str(ref, "error");
    if (want) {
        CHECK(ok, "%s renders (%s)", label, ok ? "ok" : err);
        if (ok) {
            bool same = strcmp(out, want) == 0;
            CHECK(same, "%s matches transformers byte for byte", label);
            if (!same) show_diff(label, out, want);
        }
    } else {
        CHECK(!ok, "%s fails as in transformers (%s)", label, want_err ? want_err : "?");
        if (!ok) {
            CHECK(strchr(err, '\n') == NULL && strlen(err) > 0, "%s: error is one line: %s", label, err);
            /* a message the template raises itself must come through */
            if (want_err && template_text && strstr(template_text, want_err))
                CHECK(strstr(err, want_err) != NULL, "%s: error carries the template's message: %s", label, err);
        }
    }
}

static void test_builtins(void) {
    CHECK(chat_builtin_count() >= 11, "at least 11 built-in templates (%zu)", chat_builtin_count());
    static const char *const names[] = {"chatml", "smollm2", "qwen2.5", "llama2", "llama3", "llama3.1", "llama3.2",
                                        "mistral", "mistral-v0.3", "gemma", "phi3", "zephyr", NULL};
    for (int i = 0; names[i]; i++) {
        const char *b = chat_builtin_template(names[i]);
        char *f = fixture_text(names[i]);
        CHECK(b && f && strcmp(b, f) == 0, "builtin '%s' is the fixture template text byte for byte", names[i]);
        char err[256];
        CHECK(b && chat_template_check(b, err, sizeof err), "builtin '%s' parses", names[i]);
        free(f);
    }
    CHECK(chat_builtin_template("no-such-template") == NULL, "unknown builtin name gives NULL");
    CHECK(chat_builtin_name(chat_builtin_count()) == NULL, "builtin index out of range gives NULL");
}

/* The default model's own template (read by greta's GGUF reader) is the smollm2 builtin,
 * and renders like the fixture that transformers produced from the gguf package's read. */
static void test_default_model(void) {
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", check_repo_dir());
    gguf_file *f = NULL;
    gguf_open(path, &f, err, sizeof err);
    CHECK(f != NULL, "default model opens (%s; run scripts/fetch-model)", f ? path : err);
    if (!f) return;
    gguf_str s;
    bool found = gguf_get_str(f, "tokenizer.chat_template", &s);
    CHECK(found, "default model has tokenizer.chat_template");
    if (found) {
        char *text = malloc(s.len + 1);
        memcpy(text, s.ptr, s.len);
        text[s.len] = 0;
        const char *b = chat_builtin_template("smollm2");
        CHECK(b && strcmp(text, b) == 0, "model's chat template equals the smollm2 builtin byte for byte");
        chat_message m[] = {{"user", "Hi"}};
        char *out = NULL;
        bool ok = chat_render(text, m, 1, true, "<|im_start|>", "<|im_end|>", &out, err, sizeof err);
        const char *want = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                           "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
        CHECK(ok && strcmp(out, want) == 0, "model's template renders a one-turn prompt (%s)", ok ? out : err);
        free(out);
        free(text);
    }
    gguf_close(f);
}

static void test_fixture_cases(const json_t *doc) {
    const json_t *convs = json_object_get(doc, "conversations");
    json_int_t fixed = json_integer_value(json_object_get(doc, "fixed_time"));
    const json_t *cases = json_object_get(doc, "cases");
    CHECK(json_array_size(cases) >= 100, "fixture has %zu template cases", json_array_size(cases));
    size_t i;
    const json_t *cs;
    json_array_foreach(cases, i, cs) {
        const char *tname = opt_str(cs, "template"), *cname = opt_str(cs, "conversation");
        char *text = fixture_text(tname);
        CHECK(text != NULL, "template %s readable", tname);
        if (!text) continue;
        conversation conv = load_conversation(json_object_get(convs, cname));
        chat_options o = chat_default_options();
        o.add_generation_prompt = json_is_true(json_object_get(cs, "add_generation_prompt"));
        o.bos_token = opt_str(cs, "bos_token");
        o.eos_token = opt_str(cs, "eos_token");
        o.use_fixed_time = true;
        o.fixed_time = fixed;
        char *tools = NULL;
        if (json_object_get(cs, "tools")) tools = json_dumps(json_object_get(cs, "tools"), JSON_COMPACT);
        o.tools_json = tools;
        char *out = NULL, err[1024];
        bool ok = chat_render_opts(text, conv.msgs, conv.n, &o, &out, err, sizeof err);
        char label[256];
        snprintf(label, sizeof label, "%s/%s/gen=%d%s", tname, cname, o.add_generation_prompt, tools ? "/tools" : "");
        check_result(label, text, ok, out, err, cs);
        free(out);
        free(tools);
        free(conv.msgs);
        free(text);
    }
}

static void test_units(const json_t *doc, const char *key, bool hostile) {
    const json_t *convs = json_object_get(doc, "conversations");
    json_int_t fixed = json_integer_value(json_object_get(doc, "fixed_time"));
    conversation conv = load_conversation(json_object_get(convs, "sys_multi"));
    size_t i;
    const json_t *u;
    json_array_foreach(json_object_get(doc, key), i, u) {
        const char *text = opt_str(u, "template_text");
        const json_t *ref = hostile ? json_object_get(u, "reference") : u;
        chat_options o = chat_default_options();
        o.add_generation_prompt = true;
        o.bos_token = "<s>";
        o.eos_token = "</s>";
        o.use_fixed_time = true;
        o.fixed_time = fixed;
        char *out = NULL, err[1024];
        bool ok = chat_render_opts(text, conv.msgs, conv.n, &o, &out, err, sizeof err);
        char label[128];
        snprintf(label, sizeof label, "%s[%zu] %.40s", key, i, text);
        for (char *p = label; *p; p++) if (*p == '\n') *p = ' ';
        check_result(label, text, ok, out, err, ref);
        free(out);
    }
    free(conv.msgs);
}

static void test_errors(void) {
    chat_message m[] = {{"user", "hi"}};
    char *out = NULL, err[512];
    bool ok = chat_render("line one\n{% if %}", m, 1, true, "<s>", "</s>", &out, err, sizeof err);
    CHECK(!ok && out == NULL, "syntax error fails");
    CHECK(strstr(err, "2:") != NULL, "syntax error names line 2: %s", err);
    CHECK(strstr(err, "--chat-template NAME|FILE") != NULL, "unparsable template points at --chat-template: %s", err);
    CHECK(!chat_template_check("{% for x in y %}", err, sizeof err) && strstr(err, "--chat-template"),
          "chat_template_check rejects an unclosed for: %s", err);
    CHECK(chat_template_check("{{ messages }}", err, sizeof err), "chat_template_check accepts a valid template");
    ok = chat_render(NULL, m, 1, true, NULL, NULL, &out, err, sizeof err);
    CHECK(!ok && strstr(err, "--chat-template"), "missing template is an error: %s", err);

    /* raise_exception: the template's message, no hint */
    ok = chat_render("{{ raise_exception('Roles must alternate') }}", m, 1, true, NULL, NULL, &out, err, sizeof err);
    CHECK(!ok && strstr(err, "Roles must alternate") && !strstr(err, "--chat-template"),
          "raise_exception gives its message: %s", err);

    /* limits from the options */
    chat_options o = chat_default_options();
    o.max_output_bytes = 100;
    ok = chat_render_opts("{% for i in range(1000) %}xx{% endfor %}", m, 1, &o, &out, err, sizeof err);
    CHECK(!ok && strstr(err, "exceeds"), "output limit is enforced: %s", err);
    o = chat_default_options();
    o.max_work = 32000; /* 1000 steps */
    ok = chat_render_opts("{% for i in range(900) %}{{ i }}{% endfor %}", m, 1, &o, &out, err, sizeof err);
    CHECK(!ok && strstr(err, "work budget of 32000 units"), "work budget is enforced: %s", err);

    /* tools must be a JSON array */
    o = chat_default_options();
    o.tools_json = "{\"not\": \"an array\"}";
    ok = chat_render_opts("{{ tools }}", m, 1, &o, &out, err, sizeof err);
    CHECK(!ok && strstr(err, "array"), "tools_json must be an array: %s", err);
    o.tools_json = "[1, 2";
    ok = chat_render_opts("{{ tools }}", m, 1, &o, &out, err, sizeof err);
    CHECK(!ok && strstr(err, "tools"), "malformed tools_json is an error: %s", err);

    /* bytes that are not UTF-8 pass through unchanged */
    chat_message bad[] = {{"user", "a\xff\xfe b"}};
    ok = chat_render("{{ messages[0].content }}|{{ messages[0].content|length }}", bad, 1, false, NULL, NULL, &out,
                     err, sizeof err);
    CHECK(ok && out && strcmp(out, "a\xff\xfe b|5") == 0, "invalid UTF-8 content passes through (%s)", ok ? out : err);
    free(out);
    out = NULL;

    /* NULL content is none; undefined bos_token prints nothing */
    chat_message nul[] = {{"assistant", NULL}};
    ok = chat_render("{{ messages[0].content is none }}[{{ bos_token }}]", nul, 1, false, NULL, NULL, &out, err,
                     sizeof err);
    CHECK(ok && out && strcmp(out, "True[]") == 0, "NULL content is none, no bos is undefined (%s)", ok ? out : err);
    free(out);
    out = NULL;

    /* every prefix of a real template either parses or fails cleanly */
    const char *t = chat_builtin_template("llama3.1");
    size_t n = strlen(t), failures = 0, crashes = 0;
    char *buf = malloc(n + 1);
    for (size_t k = 0; k < n; k += 7) {
        memcpy(buf, t, k);
        buf[k] = 0;
        chat_message sm[] = {{"system", "s"}, {"user", "u"}};
        ok = chat_render(buf, sm, 2, true, "<s>", "</s>", &out, err, sizeof err);
        if (!ok) {
            failures++;
            if (!err[0] || strchr(err, '\n')) crashes++;
        }
        free(out);
        out = NULL;
    }
    free(buf);
    CHECK(failures > 0 && crashes == 0, "truncated templates: %zu clean failures, %zu bad error lines", failures, crashes);
}

/* Renders text with no messages; returns ok and the CPU seconds it took. */
static bool render_timed(const char *text, char **out, char *err, size_t err_size, double *seconds) {
    chat_options o = chat_default_options();
    clock_t t0 = clock();
    bool ok = chat_render_opts(text, NULL, 0, &o, out, err, err_size);
    *seconds = (double)(clock() - t0) / CLOCKS_PER_SEC;
    return ok;
}

/* Issue 9's hostile templates: each ends in a one-line error naming the
 * limit (nesting or the work budget), quickly. Before the fix the first
 * crashed with SIGSEGV (unbounded recursion in equal()) and the others ran
 * for hours. The time bound is 10 s of CPU (generous, for sanitizer builds;
 * a quiet machine takes well under a second). */
static void test_hostile_work(void) {
#define DEEP "{% set ns = namespace(a=[], b=[]) %}{% for i in range(100000) %}"
#define DOUBLED "{% set ns = namespace(a=1, b=1) %}{% for i in range(60) %}"
#define BIG16 "{% set s = 'x' * 16000000 %}{% set t = 'x' * 16000000 %}"
    static const struct { const char *text, *want; } cases[] = {
        {DEEP "{% set ns.a = [ns.a] %}{% set ns.b = [ns.b] %}{% endfor %}{{ ns.a == ns.b }}", "nested deeper than 64"},
        {DEEP "{% set ns.a = [ns.a] %}{% set ns.b = [ns.b] %}{% endfor %}{{ ns.a != ns.b }}", "nested deeper than 64"},
        {DEEP "{% set ns.a = [ns.a] %}{% set ns.b = [ns.b] %}{% endfor %}{{ ns.a in [ns.b] }}", "nested deeper than 64"},
        {DEEP "{% set ns.a = [ns.a] %}{% set ns.b = [ns.b] %}{% endfor %}{{ [ns.a, ns.b] | sort }}", "nested deeper than 64"},
        {DEEP "{% set ns.a = [ns.a] %}{% set ns.b = [ns.b] %}{% endfor %}{{ [ns.a, ns.b] | unique | list }}",
         "nested deeper than 64"},
        {DEEP "{% set ns.a = [ns.a] %}{% set ns.b = [ns.b] %}{% endfor %}{{ ns.a < ns.b }}", "nested deeper than 64"},
        {DEEP "{% set ns.a = {'k': ns.a} %}{% set ns.b = {'k': ns.b} %}{% endfor %}{{ ns.a == ns.b }}",
         "nested deeper than 64"},
        {DEEP "{% set ns.a = {'k': ns.a} %}{% set ns.b = {'k': ns.b} %}{% endfor %}{{ {ns.a: 1} == {ns.b: 1} }}",
         "unhashable"},
        {DEEP "{% set ns.a = (ns.a,) %}{% set ns.b = (ns.b,) %}{% endfor %}{{ {ns.a: 1}[ns.b] }}", "nested deeper than 64"},
        {DEEP "{% set ns.a = [ns.a] %}{% endfor %}{{ ns.a }}", "nested deeper than 64"},
        {DEEP "{% set ns.a = [ns.a] %}{% endfor %}{{ ns.a | tojson }}", "nested deeper than 64"},
        {DOUBLED "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}",
         "work budget"},
        {DOUBLED "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ [ns.a, ns.b] | sort }}",
         "work budget"},
        {BIG16 "{% for i in range(1000000) %}{% if s == t %}{% endif %}{% endfor %}", "work budget"},
        {BIG16 "{% for i in range(1000000) %}{% if 'y' in s %}{% endif %}{% endfor %}", "work budget"},
        {BIG16 "{% for i in range(1000000) %}{% if s.find('y') %}{% endif %}{% endfor %}", "work budget"},
        {BIG16 "{% for i in range(1000000) %}{% if s.rfind(t[:8000000]) %}{% endif %}{% endfor %}", "work budget"},
        {BIG16 "{% for i in range(1000000) %}{% if s|length %}{% endif %}{% endfor %}", "work budget"},
        {BIG16 "{% for i in range(1000000) %}{% if s < t %}{% endif %}{% endfor %}", "work budget"},
        {"{% set s = 'x' * 8000000 %}{{ ([s] * 1000000) | sort | length }}", "work budget"},
        {"{% set s = 'x' * 8000000 %}{{ ([s] * 1000000) | unique | list | length }}", "work budget"},
        {"{% set s = 'x' * 8000000 %}{{ ([s] * 1000000) | sort(case_sensitive=false) | length }}", "work budget"},
        {"{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}", "work budget"},
    };
#undef DEEP
#undef DOUBLED
#undef BIG16
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL, err[1024] = "";
        double seconds;
        bool ok = render_timed(cases[i].text, &out, err, sizeof err, &seconds);
        CHECK(!ok && strstr(err, cases[i].want) && !strchr(err, '\n'), "hostile %zu ends in one line naming '%s': %s", i,
              cases[i].want, ok ? "(rendered)" : err);
        CHECK(seconds < 10.0, "hostile %zu stops in %.2f s of CPU", i, seconds);
        free(out);
    }

    /* 4000 string literals in a 36 KB template: each literal's buffer is its
     * own size (each took the rest of the template before: 72 MB) */
    size_t n = 4000;
    char *text = malloc(n * 9 + 1);
    for (size_t i = 0; i < n; i++) memcpy(text + i * 9, "{{ \"x\" }}", 9);
    text[n * 9] = 0;
    char *out = NULL, err[1024] = "";
    double seconds;
    bool ok = render_timed(text, &out, err, sizeof err, &seconds);
    CHECK(ok && out && strlen(out) == n && strspn(out, "x") == n, "4000 string literals render (%s)", ok ? "ok" : err);
    free(out);
    free(text);

    /* the budget leaves room for real use: every built-in template renders a
     * conversation holding a 1 MiB message (more than a 128k-token context) */
    size_t big_len = (size_t)1 << 20;
    char *big = malloc(big_len + 1);
    for (size_t i = 0; i < big_len; i++) big[i] = "word \n"[i % 6];
    big[big_len] = 0;
    for (size_t b = 0; b < chat_builtin_count(); b++) {
        chat_message conv[] = {{"user", big}, {"assistant", big}, {"user", "again"}};
        out = NULL;
        ok = chat_render(chat_builtin_template(chat_builtin_name(b)), conv, 3, true, "<s>", "</s>", &out, err, sizeof err);
        CHECK(ok && strlen(out) > 2 * big_len - 4096, "%s renders two 1 MiB messages within the budget (%s)",
              chat_builtin_name(b), ok ? "ok" : err);
        free(out);
    }
    free(big);

    /* sorting is stable and matches Python's (outputs from jinja2 3.1's
     * ImmutableSandboxedEnvironment, as transformers renders) */
    static const struct { const char *text, *want; } sorts[] = {
        {"{{ [5, 3, 9, 1, 3, 7, 2, 8, 0, 6, 4] | sort }}", "[0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9]"},
        {"{{ [5, 3, 9, 1, 3, 7, 2, 8, 0, 6, 4] | sort(reverse=true) }}", "[9, 8, 7, 6, 5, 4, 3, 3, 2, 1, 0]"},
        {"{{ [{'k': 2, 'n': 'a'}, {'k': 1, 'n': 'b'}, {'k': 2, 'n': 'c'}, {'k': 1, 'n': 'd'}, {'k': 0, 'n': 'e'}]"
         " | sort(attribute='k') | map(attribute='n') | join }}", "ebdac"},
        {"{{ [{'k': 2, 'n': 'a'}, {'k': 1, 'n': 'b'}, {'k': 2, 'n': 'c'}, {'k': 1, 'n': 'd'}, {'k': 0, 'n': 'e'}]"
         " | sort(attribute='k', reverse=true) | map(attribute='n') | join }}", "acbde"},
        {"{{ ['b', 'A', 'a', 'B', 'c'] | sort }}", "['A', 'a', 'b', 'B', 'c']"},
        {"{{ ['b', 'A', 'a', 'B', 'c'] | sort(case_sensitive=true) }}", "['A', 'B', 'a', 'b', 'c']"},
        {"{{ [[1, 2], [1], [0, 5], [1, 1]] | sort }}", "[[0, 5], [1], [1, 1], [1, 2]]"},
        {"{{ 'abcabc'.rfind('bc') }}|{{ 'abcabc'.find('bc') }}|{{ 'abc'.rfind('') }}|{{ 'abc'.find('') }}|"
         "{{ 'aaaa'.count('aa') }}|{{ 'xyz'.rfind('q') }}|{{ 'h\xc3\xa9llo'.rfind('l') }}", "4|1|3|0|2|-1|3"},
        {"{{ 'x,y,,z'.split(',') }}|{{ 'a b  c'.split() }}|{{ '  ab  '.strip(' a') }}", "['x', 'y', '', 'z']|['a', 'b', 'c']|b"},
    };
    for (size_t i = 0; i < sizeof sorts / sizeof sorts[0]; i++) {
        out = NULL;
        ok = render_timed(sorts[i].text, &out, err, sizeof err, &seconds);
        CHECK(ok && strcmp(out, sorts[i].want) == 0, "sort/find case %zu: %s (want %s)", i, ok ? out : err, sorts[i].want);
        free(out);
    }
}

int main(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/chat/expected.json", check_repo_dir());
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    CHECK(doc != NULL, "fixture %s loads (%s)", path, doc ? "ok" : je.text);
    test_builtins();
    test_default_model();
    if (doc) {
        test_fixture_cases(doc);
        test_units(doc, "units", false);
        test_units(doc, "hostile", true);
    }
    test_errors();
    test_hostile_work();
    json_decref(doc);
    return check_finish("test_chat");
}
