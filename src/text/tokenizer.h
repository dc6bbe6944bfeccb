/* tokenizer.h: text <-> token ids for the vocabulary stored in a GGUF file.
 *
 * Two kinds, chosen by the metadata key tokenizer.ggml.model:
 *   "llama"  SentencePiece-style: score-driven merges of UTF-8 characters,
 *            byte fallback tokens <0xNN>, '▁' (U+2581) for spaces and the
 *            leading-space rule (tokenizer.ggml.add_space_prefix).
 *   "gpt2"   byte-level BPE: the pre-tokenizer named by tokenizer.ggml.pre
 *            splits the text (PCRE2 regexes, UTF + UCP), each piece is mapped
 *            byte -> printable code point (GPT-2's byte-to-unicode table) and
 *            merged by the ranks in tokenizer.ggml.merges.
 * Any other model or pre value is a load error that names it.
 *
 * A loaded tokenizer is immutable and holds no pointers into the GGUF file
 * (it may be closed afterwards); encode/decode may run concurrently from
 * several threads on one tokenizer. See docs/tokenizer.md. */
#ifndef GRETA_TOKENIZER_H
#define GRETA_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"

typedef struct tokenizer tokenizer;

/* Token types as stored in tokenizer.ggml.token_type (llama.cpp's values). */
typedef enum {
    TOKEN_TYPE_UNDEFINED = 0,
    TOKEN_TYPE_NORMAL = 1,
    TOKEN_TYPE_UNKNOWN = 2,
    TOKEN_TYPE_CONTROL = 3,
    TOKEN_TYPE_USER_DEFINED = 4,
    TOKEN_TYPE_UNUSED = 5,
    TOKEN_TYPE_BYTE = 6,
} token_type;

typedef enum {
    TOKENIZER_SPM = 1, /* tokenizer.ggml.model = "llama" */
    TOKENIZER_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
} tokenizer_kind;

/* Reads the tokenizer.* keys of file and builds a tokenizer (copies all it
 * needs). On failure returns NULL with a one-line reason in err, e.g.
 * "unknown tokenizer.ggml.pre 'foo'" or "missing key tokenizer.ggml.tokens". */
tokenizer *tokenizer_load(const gguf_file *file, char *err, size_t err_size);
void tokenizer_free(tokenizer *tok);

tokenizer_kind tokenizer_get_kind(const tokenizer *tok);
/* The tokenizer.ggml.pre value in use ("default" when absent for gpt2,
 * "" for llama). */
const char *tokenizer_pre_name(const tokenizer *tok);

int32_t tokenizer_vocab_size(const tokenizer *tok);
/* Special token ids, -1 when the vocabulary has none. */
int32_t tokenizer_bos(const tokenizer *tok);
int32_t tokenizer_eos(const tokenizer *tok);
int32_t tokenizer_eot(const tokenizer *tok);
int32_t tokenizer_unk(const tokenizer *tok);
int32_t tokenizer_pad(const tokenizer *tok);
/* Whether encode(add_special=true) prepends BOS / appends EOS (metadata
 * add_bos_token / add_eos_token, else the model kind's default: llama adds
 * BOS, gpt2 adds nothing). */
bool tokenizer_adds_bos(const tokenizer *tok);
bool tokenizer_adds_eos(const tokenizer *tok);

/* True for ids that end generation: EOS, EOT and the control tokens
 * llama.cpp treats as end-of-generation (<|eot_id|>, <|im_end|>, <|end|>,
 * <end_of_turn>, <|endoftext|>, ...). False for out-of-range ids. */
bool tokenizer_is_end_of_generation(const tokenizer *tok, int32_t id);

/* The vocabulary entry of id as stored (e.g. "Ġthe", "▁the", "<0x0A>"),
 * NUL-terminated; NULL for out-of-range ids. */
const char *tokenizer_token_text(const tokenizer *tok, int32_t id);
token_type tokenizer_token_type(const tokenizer *tok, int32_t id);
float tokenizer_token_score(const tokenizer *tok, int32_t id);
/* The id of a vocabulary entry with exactly this text, -1 if none. */
int32_t tokenizer_find_token(const tokenizer *tok, const char *text, size_t len);

/* Encodes len bytes of text (need not be NUL-terminated nor valid UTF-8).
 * add_special: prepend BOS / append EOS as tokenizer_adds_bos/eos say.
 * parse_special: control (and unknown-type) token texts in the input become
 * their single ids; otherwise they are tokenized as plain text.
 * User-defined tokens are always kept whole.
 * Invalid UTF-8 is first repaired as Python's bytes.decode("utf-8",
 * "replace") does (one U+FFFD per maximal invalid subpart): that is the
 * text Hugging Face would see. A BPE byte the vocabulary cannot spell is
 * dropped (as HF); see docs/tokenizer.md.
 * On success *ids is malloc'ed (caller frees; may be NULL for 0 ids) and
 * *n_ids set. Returns false on allocation failure or when an SPM vocabulary
 * has neither byte tokens nor an unknown token for a character (reason in
 * err). */
bool tokenizer_encode(const tokenizer *tok, const char *text, size_t len, bool add_special,
                      bool parse_special, int32_t **ids, size_t *n_ids, char *err, size_t err_size);

/* Exact bytes token id decodes to, in isolation, without the leading-space
 * rule: "Ġthe" -> " the", "▁the" -> " the", "<0x0A>" -> "\n". Control tokens
 * give their text when render_special, else nothing. Returns the number of
 * bytes the token has (which may exceed cap: then only cap bytes were
 * written), or -1 for an out-of-range id. No NUL is appended. */
int tokenizer_token_bytes(const tokenizer *tok, int32_t id, bool render_special, char *buf,
                          size_t cap);

/* Decodes a whole sequence into a malloc'ed NUL-terminated buffer (*out;
 * *out_len bytes excluding the NUL). For llama vocabularies with
 * add_space_prefix the single space the encoder added in front of the
 * first text token is removed (as HF decode does). Bytes are returned
 * exactly, even if not valid UTF-8. Returns false on an out-of-range id or
 * allocation failure (reason in err). */
bool tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n, bool render_special,
                      char **out, size_t *out_len, char *err, size_t err_size);

/* Streaming detokenizer: feed generated ids one at a time and print what
 * comes out. It continues a sequence, so it never strips a leading space
 * (generated text follows the prompt). Holds back the tail of an incomplete UTF-8 sequence until it
 * completes; a sequence that turns out invalid is emitted as U+FFFD per
 * maximal invalid subpart (as Python's errors="replace"), and
 * detok_stream_flush() does the same for whatever is still held at the end.
 * Output is always valid UTF-8. */
typedef struct detok_stream detok_stream;

detok_stream *detok_stream_new(const tokenizer *tok, bool render_special);
void detok_stream_free(detok_stream *stream);
/* Appends the text of id. Writes the bytes now printable into *out (valid
 * until the next call on this stream) and their count into *out_len.
 * Returns false on an out-of-range id or allocation failure. */
bool detok_stream_push(detok_stream *stream, int32_t id, const char **out, size_t *out_len);
/* Ends the stream: returns whatever was held (incomplete sequences as
 * U+FFFD) and resets the stream for a new sequence. */
bool detok_stream_flush(detok_stream *stream, const char **out, size_t *out_len);

#endif
