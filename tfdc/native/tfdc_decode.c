/*
 * tfdc_decode.c - decoder for tfdc-packed .tflite files (docs/FORMAT.md):
 * format 2 (`tfdc.v2`, §3-§7, versions 2.0 to 2.3) and format 1
 * (`tfdc.v1`, appendix A).
 *
 * C99, libc + zlib (raw inflate of format 2's meta stream with its preset
 * dictionary, and CRC-32). Sections:
 *   1. the bounds check, little-endian loads, CRC-32
 *   2. the minimal flatbuffer reader (§3.1) and locating the section (§3.2)
 *   3. canonical-Huffman decoding tables and the segment bit reader (§5.2)
 *   3b. the context-modelled range code, table kinds 3 and 4 (§5.3, §5.4)
 *   4. elements: stores, transforms, binary16 (§6.1-§6.3)
 *   5. format 2: header, inflate, tables, records, patches (§4-§7)
 *   6. format 1 (appendix A)
 *   7. the public API
 *
 * Why it is fast: symbols are decoded with a lookup table indexed by the
 * next 11 bits of a 64-bit, most-significant-first bit buffer (codes of 12
 * to 15 bits take one more lookup in a subtable), refilled branch-free with
 * one unaligned 8-byte load per three symbols; symbols go through an
 * L1-resident chunk buffer and are mapped to their codebook entry and
 * stored in a tight loop; a sparse record's zero runs are filled with
 * memset just ahead of the writes, while their cache lines are hot; code
 * tables are built once per table and shared by every stream that uses it.
 * Kind 3 (rANS) streams are table-driven too: per class a slot -> symbol
 * lookup of 2^prec entries (u8 for symbols of <= 8 bits, else u16) and one
 * packed (cum, freq) word per symbol, so a symbol costs two dependent loads,
 * a multiply and a u32 state update, with branch-free byte-wise
 * renormalisation (at most two bytes); the context is a ring of earlier
 * levels (the previous one in a register), no division anywhere. Kind 4
 * adds a table base per symbol from a column counter and a row counter
 * (one 64-bit division per segment, none per symbol), in loops of their
 * own, so that kind 3's loops are compiled as before.
 *
 * Safety: every read of untrusted bytes (the file, the inflated meta stream)
 * is preceded by the one bounds check TFDC_IN_BOUNDS; sizes are uint64_t and
 * every sum or product of file-chosen numbers is checked for overflow before
 * use (also where size_t has 32 bits); the decoded size is checked against
 * the caller's limit before anything is allocated; all work is bounded by
 * the input size or the decoded size.
 */
#include "tfdc_decode.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tfdc_dictionary.h"
#include "tfdc_format.h"

#if defined(__GNUC__) || defined(__clang__)
#define TFDC_LIKELY(x) __builtin_expect(!!(x), 1)
#define TFDC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TFDC_ALWAYS_INLINE __attribute__((always_inline)) inline
#define TFDC_NOINLINE __attribute__((noinline))
#else
#define TFDC_LIKELY(x) (x)
#define TFDC_UNLIKELY(x) (x)
#define TFDC_ALWAYS_INLINE inline
#define TFDC_NOINLINE
#endif

#define PRIMARY_BITS 11u
/* Primary table plus all subtables never exceed 2^11 + 2^15 entries: each of
 * the 2^11 prefixes owns at most 2^(15-11) subtable entries. */
#define HTAB_ENTRIES ((1u << PRIMARY_BITS) + (1u << TFDC_MAX_CODE_LEN))
#define CHUNK 4096u /* symbols decoded per step into an L1-resident buffer */
/* Stream slots of one record: the gap stream and up to 8 value planes. */
#define MAX_STREAMS (1 + TFDC_MAX_PLANES)

/* ======================================================================== */
/* 1. The bounds check, loads, CRC-32                                        */

/* The one bounds check: true iff the n bytes at pos lie within [0, len).
 * Written so that no sum can wrap. */
#define TFDC_IN_BOUNDS(pos, n, len) \
  ((uint64_t)(pos) <= (uint64_t)(len) && (uint64_t)(n) <= (uint64_t)(len) - (uint64_t)(pos))

/* Returns a failing status at once. */
#define TRY(expr)                 \
  do {                            \
    int rc_ = (expr);             \
    if (rc_ != TFDC_OK) return rc_; \
  } while (0)

static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t ld32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }

/* 8 bytes as a big-endian integer: the bit reader is most-significant first. */
static uint64_t ld64be(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__GNUC__) || defined(__clang__))
  return __builtin_bswap64(v);
#else
  return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
         ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
         ((uint64_t)p[6] << 8) | (uint64_t)p[7];
#endif
}

/* zlib's CRC-32 (§2), fed in pieces: its length argument is 32-bit. */
static uint32_t crc32_bytes(const uint8_t *p, uint64_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, k);
    p += k;
    n -= k;
  }
  return (uint32_t)c;
}

/* Fuzzing builds skip checksums so that mutated inputs reach the parsers
 * behind them. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define crc_ok(computed, stored) ((void)(computed), (void)(stored), 1)
#else
#define crc_ok(computed, stored) ((computed) == (stored))
#endif

/* ======================================================================== */
/* 2. Minimal flatbuffer reader (§3.1) and the section (§3.2)               */

typedef struct {
  const uint8_t *buf;
  uint64_t len;
} fbuf;

static int fb_u32(const fbuf *f, uint64_t pos, uint32_t *v) {
  if (!TFDC_IN_BOUNDS(pos, 4, f->len)) return TFDC_ERR_FLATBUFFER;
  *v = ld32(f->buf + pos);
  return TFDC_OK;
}

/* Position of field `id` of the table at T, or 0 if the field is absent
 * (position 0 is the root offset, never a field). */
static int fb_field(const fbuf *f, uint64_t T, unsigned id, uint64_t *field) {
  uint32_t sv;
  int64_t V;
  uint16_t vt_size, o;
  int rc = fb_u32(f, T, &sv);
  if (rc) return rc;
  V = (int64_t)T - (int64_t)(int32_t)sv; /* T < 2^32 + 2^32: no overflow */
  if (V < 0 || !TFDC_IN_BOUNDS(V, 2, f->len)) return TFDC_ERR_FLATBUFFER;
  vt_size = ld16(f->buf + V);
  if (vt_size < 4 || (vt_size & 1)) return TFDC_ERR_FLATBUFFER;
  *field = 0;
  if (4u + 2u * id >= vt_size) return TFDC_OK;
  if (!TFDC_IN_BOUNDS((uint64_t)V + 4 + 2 * id, 2, f->len)) return TFDC_ERR_FLATBUFFER;
  o = ld16(f->buf + V + 4 + 2 * id);
  if (o != 0) *field = T + o;
  return TFDC_OK;
}

/* Follows the uoffset stored at F. */
static int fb_deref(const fbuf *f, uint64_t F, uint64_t *target) {
  uint32_t u;
  int rc = fb_u32(f, F, &u);
  if (rc) return rc;
  *target = F + u;
  return TFDC_OK;
}

/* Vector at P with elements of `elem` bytes: count and element start. */
static int fb_vector(const fbuf *f, uint64_t P, uint64_t elem, uint32_t *n, uint64_t *start) {
  int rc = fb_u32(f, P, n);
  if (rc) return rc;
  if (!TFDC_IN_BOUNDS(P + 4, (uint64_t)*n * elem, f->len)) return TFDC_ERR_FLATBUFFER;
  *start = P + 4;
  return TFDC_OK;
}

/* Reference field `id` of table T: referenced position, or 0 when absent. */
static int fb_ref_field(const fbuf *f, uint64_t T, unsigned id, uint64_t *pos) {
  uint64_t F;
  int rc = fb_field(f, T, id, &F);
  if (rc) return rc;
  *pos = 0;
  return F ? fb_deref(f, F, pos) : TFDC_OK;
}

static int fb_scalar(const fbuf *f, uint64_t T, unsigned id, unsigned bytes, uint64_t *v) {
  uint64_t F;
  int rc = fb_field(f, T, id, &F);
  if (rc) return rc;
  *v = 0;
  if (!F) return TFDC_OK;
  if (!TFDC_IN_BOUNDS(F, bytes, f->len)) return TFDC_ERR_FLATBUFFER;
  *v = bytes == 8 ? ld64(f->buf + F) : ld32(f->buf + F);
  return TFDC_OK;
}

/* What the decoder needs from one Buffer table; all of it is compared when
 * a patched inner flatbuffer is read again (§6.7). */
typedef struct {
  uint64_t offset, size;
  uint64_t data_pos; /* position of the data vector, 0 if the field is absent */
  uint32_t data_len; /* its element count */
  int has_data;      /* data vector present and non-empty */
} fb_buffer;

typedef struct {
  fbuf f;
  uint64_t root;
  uint32_t num_buffers;
  uint64_t buffers_start; /* position of the first uoffset of Model.buffers */
} fb_model;

static int fb_get_buffer(const fb_model *m, uint32_t idx, fb_buffer *b) {
  uint64_t T, data;
  int rc;
  if (idx >= m->num_buffers) return TFDC_ERR_CORRUPT;
  if ((rc = fb_deref(&m->f, m->buffers_start + 4ull * idx, &T))) return rc;
  if ((rc = fb_ref_field(&m->f, T, TFDC_FB_BUFFER_DATA, &data))) return rc;
  /* A referenced position is never 0 (a field lies after its table's
   * soffset), so 0 can mean "absent". */
  b->data_pos = data;
  b->data_len = 0;
  if (data) {
    uint64_t start;
    if ((rc = fb_vector(&m->f, data, 1, &b->data_len, &start))) return rc;
  }
  b->has_data = b->data_len != 0;
  if ((rc = fb_scalar(&m->f, T, TFDC_FB_BUFFER_OFFSET, 8, &b->offset))) return rc;
  return fb_scalar(&m->f, T, TFDC_FB_BUFFER_SIZE, 8, &b->size);
}

/* Root, identifier and Model.buffers of a flatbuffer; every buffer entry is
 * read once, so an out-of-range entry is an error even if unused (§3.1). */
static int fb_open(fb_model *m, const uint8_t *buf, uint64_t len) {
  uint64_t buffers;
  uint32_t j;
  int rc;
  m->f.buf = buf;
  m->f.len = len;
  m->num_buffers = 0;
  m->buffers_start = 0;
  if (len < 8) return TFDC_ERR_FLATBUFFER;
  if (memcmp(buf + 4, TFDC_FLATBUFFER_ID, 4) != 0) return TFDC_ERR_FLATBUFFER;
  m->root = ld32(buf);
  if ((rc = fb_ref_field(&m->f, m->root, TFDC_FB_MODEL_BUFFERS, &buffers))) return rc;
  if (buffers && (rc = fb_vector(&m->f, buffers, 4, &m->num_buffers, &m->buffers_start))) return rc;
  for (j = 0; j < m->num_buffers; j++) {
    fb_buffer b;
    if ((rc = fb_get_buffer(m, j, &b))) return rc;
  }
  return TFDC_OK;
}

typedef struct {
  fb_model model;
  int major;               /* 1 or 2 */
  uint32_t section_buffer; /* b */
  uint64_t S, Z;
} located;

/* Format 1 files that were already decoded keep their section and append
 * the weights after it: a standard model, reported as NOT_PACKED. */
static int v1_already_decoded(const uint8_t *in, uint64_t len, uint64_t S, uint64_t Z) {
  const uint8_t *h = in + S;
  if (Z < TFDC_V1_HEADER_SIZE + TFDC_CRC_SIZE || !TFDC_IN_BOUNDS(S, Z, len)) return 0;
  if (memcmp(h, TFDC_MAGIC, 4) != 0) return 0;
  return ld64(h + TFDC_V1_HEADER_DECODED_SIZE) == len &&
         crc32_bytes(h, Z - TFDC_CRC_SIZE) == ld32(h + Z - TFDC_CRC_SIZE);
}

/* The status of a stub with no section key (§3.2): NOT_PACKED (a plain
 * model, which an app passes on as it is) unless a buffer ends the file with
 * the section magic and a version: then a packed file whose key was damaged
 * (CORRUPT), or one of a major version this decoder does not know (VERSION). */
static int keyless_status(const fb_model *m, const uint8_t *in, uint64_t len) {
  uint32_t j;
  for (j = 0; j < m->num_buffers; j++) {
    fb_buffer b;
    unsigned major;
    if (fb_get_buffer(m, j, &b)) continue; /* read once by fb_open: cannot fail */
    if (b.offset < TFDC_MIN_SECTION_OFFSET || b.offset > len || b.size != len - b.offset ||
        b.size < TFDC_PREFIX_SIZE || memcmp(in + b.offset, TFDC_MAGIC, 4) != 0)
      continue;
    major = ld16(in + b.offset + TFDC_PREFIX_VERSION_MAJOR);
    return major == 1 || major == TFDC_FORMAT_MAJOR ? TFDC_ERR_CORRUPT : TFDC_ERR_VERSION;
  }
  return TFDC_ERR_NOT_PACKED;
}

/* Finds the unique section key among the stub's metadata (§3.2). */
static int locate_section(const uint8_t *in, size_t in_len, located *L) {
  fbuf *f = &L->model.f;
  uint64_t meta, meta_start = 0, len = (uint64_t)in_len;
  uint32_t nmeta = 0, i, buf_idx = 0;
  int rc, found = 0;
  fb_buffer sb;

  if ((rc = fb_open(&L->model, in, len))) return rc;
  if ((rc = fb_ref_field(f, L->model.root, TFDC_FB_MODEL_METADATA, &meta))) return rc;
  if (meta && (rc = fb_vector(f, meta, 4, &nmeta, &meta_start))) return rc;
  L->major = 0;
  for (i = 0; i < nmeta; i++) {
    uint64_t T, name, name_start = 0, b;
    uint32_t name_len = 0;
    int major = 0;
    if ((rc = fb_deref(f, meta_start + 4ull * i, &T))) return rc;
    if ((rc = fb_ref_field(f, T, TFDC_FB_METADATA_NAME, &name))) return rc;
    if (name && (rc = fb_vector(f, name, 1, &name_len, &name_start))) return rc;
    if ((rc = fb_scalar(f, T, TFDC_FB_METADATA_BUFFER, 4, &b))) return rc;
    if (name_len == TFDC_SECTION_KEY_LEN) {
      if (memcmp(in + name_start, TFDC_METADATA_NAME, TFDC_SECTION_KEY_LEN) == 0) major = 2;
      if (memcmp(in + name_start, TFDC_METADATA_NAME_V1, TFDC_SECTION_KEY_LEN) == 0) major = 1;
    }
    if (!major) continue;
    found++;
    L->major = major;
    buf_idx = (uint32_t)b;
  }
  if (!found) return keyless_status(&L->model, in, len);
  if (found > 1) return TFDC_ERR_CORRUPT; /* two keys */
  if (buf_idx >= L->model.num_buffers) return TFDC_ERR_CORRUPT;
  if ((rc = fb_get_buffer(&L->model, buf_idx, &sb))) return rc;
  L->section_buffer = buf_idx;
  L->S = sb.offset;
  L->Z = sb.size;
  if (L->major == 1) {
    if (L->S <= 1 || L->S % TFDC_V1_SECTION_ALIGN) return TFDC_ERR_CORRUPT;
    if (L->Z < TFDC_V1_HEADER_SIZE + TFDC_CRC_SIZE) return TFDC_ERR_CORRUPT;
  } else {
    if (L->S < TFDC_MIN_SECTION_OFFSET) return TFDC_ERR_CORRUPT;
    if (L->Z < TFDC_PREFIX_SIZE + TFDC_CRC_SIZE) return TFDC_ERR_CORRUPT;
  }
  if (L->S > len || L->Z > len - L->S) return TFDC_ERR_TRUNCATED; /* S + Z > file */
  if (L->Z != len - L->S) {                                         /* trailing bytes */
    if (L->major == 1 && v1_already_decoded(in, len, L->S, L->Z)) return TFDC_ERR_NOT_PACKED;
    return TFDC_ERR_CORRUPT;
  }
  if (sb.has_data) return TFDC_ERR_CORRUPT;
  return TFDC_OK;
}

/* ======================================================================== */
/* 3. Canonical-Huffman decoding tables and the segment bit reader (§5.2)   */

/* Decoding table entry (uint32_t):
 *   direct:   symbol << 16 | code length            (length 1..15)
 *   subtable: start << 16 | SUB | sub_bits << 8     (start indexes the table)
 *   invalid:  0 (a bit pattern that is no code; only format 1 allows it)
 */
#define HE_SUB 0x8000u

typedef struct {
  uint32_t *e;   /* HTAB_ENTRIES, allocated on first use */
  unsigned bits; /* primary table index bits = min(max_len, 11) */
  int64_t built_for; /* table index it holds, -1 if none */
} htab;

/* Builds the decoding table of the canonical code with code length lens[s]
 * (0: no code) for symbols s < n, longest length max_len (1..15). `sorted`
 * is scratch for n symbols. */
static void build_htab(htab *h, const uint8_t *lens, uint32_t n, unsigned max_len, uint16_t *sorted) {
  uint32_t count[TFDC_MAX_CODE_LEN + 1] = {0}, offs[TFDC_MAX_CODE_LEN + 2];
  uint8_t sub_len[1u << PRIMARY_BITS]; /* longest code length per long prefix */
  uint32_t sub_start[1u << PRIMARY_BITS] = {0};
  unsigned TB = max_len < PRIMARY_BITS ? max_len : PRIMARY_BITS;
  uint32_t s, k, next_free, code = 0;
  unsigned len, prev_len = 0;

  for (s = 0; s < n; s++) count[lens[s]]++;
  offs[1] = 0;
  for (len = 1; len <= TFDC_MAX_CODE_LEN; len++) offs[len + 1] = offs[len] + count[len];
  for (s = 0; s < n; s++)
    if (lens[s]) sorted[offs[lens[s]]++] = (uint16_t)s;
  memset(h->e, 0, sizeof(uint32_t) << TB);
  memset(sub_len, 0, sizeof sub_len);

  /* Pass 1: the longest code under each primary prefix sizes its subtable. */
  if (max_len > TB) {
    for (k = 0, len = 1; len <= TFDC_MAX_CODE_LEN; len++) {
      uint32_t j;
      for (j = 0; j < count[len]; j++, k++) {
        if (k > 0) code = (code + 1) << (len - prev_len);
        prev_len = len;
        if (len > TB) {
          uint32_t prefix = code >> (len - TB);
          if (len > sub_len[prefix]) sub_len[prefix] = (uint8_t)len;
        }
      }
    }
    next_free = 1u << TB;
    for (k = 0; k < (1u << TB); k++) {
      if (sub_len[k]) {
        unsigned sb = sub_len[k] - TB;
        sub_start[k] = next_free;
        memset(h->e + next_free, 0, sizeof(uint32_t) << sb);
        h->e[k] = (next_free << 16) | HE_SUB | (sb << 8);
        next_free += 1u << sb;
      }
    }
  }

  /* Pass 2: fill entries, replicating each code over the bits after it. */
  code = 0;
  prev_len = 0;
  for (k = 0, len = 1; len <= TFDC_MAX_CODE_LEN; len++) {
    uint32_t j;
    for (j = 0; j < count[len]; j++, k++) {
      uint32_t sym = sorted[k], entry = (sym << 16) | len, i, reps, base;
      if (k > 0) code = (code + 1) << (len - prev_len);
      prev_len = len;
      if (len <= TB) {
        base = code << (TB - len);
        reps = 1u << (TB - len);
      } else {
        uint32_t prefix = code >> (len - TB);
        unsigned sb = sub_len[prefix] - TB, rest = len - TB;
        base = sub_start[prefix] + ((code & ((1u << rest) - 1)) << (sb - rest));
        reps = 1u << (sb - rest);
      }
      for (i = 0; i < reps; i++) h->e[base + i] = entry;
    }
  }
  h->bits = TB;
}

/* A coded stream being read, possibly across several calls. */
typedef struct {
  uint64_t count;  /* symbols in the stream */
  uint64_t left;   /* symbols not yet returned */
  uint64_t block;  /* symbols per segment */
  int constant;    /* single-symbol table: no bits */
  uint16_t symbol1;
  uint32_t alphabet_check; /* nonzero: every symbol must be below it */
  const htab *h;
  const uint8_t *seg_lens;  /* format 1: u32 per segment; format 2: varints */
  int varint_lens;
  uint64_t nseg, seg;       /* segments, index of the current one */
  const uint8_t *seg_start; /* current segment */
  uint64_t seg_bytes, seg_left;
  const uint8_t *next_seg;
  const uint8_t *in_end; /* fast refills may read up to here */
  /* bit reader: `buf` holds `bits` valid bits left-aligned; `p` next byte */
  uint64_t buf;
  unsigned bits;
  const uint8_t *p;
  uint64_t over; /* zero bits supplied past the segment's end */
  /* kinds 3, 4 (§5.3, §5.4): `p` is the next byte of the segment */
  const struct rans_model *rm; /* NULL: a prefix code */
  const void *lut; /* [table << prec | slot] -> symbol, u8 if width <= 8 else u16; NULL: search */
  uint16_t *ring;              /* the segment's last ring_mask + 1 symbols */
  uint32_t ring_mask;
  uint32_t x;    /* the state */
  uint32_t k;    /* symbols of the current segment decoded so far */
  uint32_t last; /* the biased level of symbol k - 1 (of a position before the segment: 0) */
  uint32_t col, row; /* kind 4: symbol k's column (i mod D) and row (floor(i / D) mod P) */
  uint16_t *sbuf; /* block <= RANS_PAIR_BLOCK: two segments' symbols, decoded whole */
  uint64_t sbuf_at, sbuf_len;
} stream;

/* Checks the end of the current segment: the codes used exactly
 * ceil(bits / 8) == segment_bytes bytes and the padding bits are zero. */
static int segment_finish(const stream *s) {
  uint64_t consumed = (uint64_t)(s->p - s->seg_start) * 8 + s->over - s->bits;
  uint64_t need = (consumed + 7) / 8;
  if (consumed > s->seg_bytes * 8) return TFDC_ERR_TRUNCATED; /* ran past its end */
  if (need != s->seg_bytes) return TFDC_ERR_CORRUPT;
  if (consumed % 8) {
    unsigned pad = 8 - (unsigned)(consumed % 8);
    if (s->seg_start[s->seg_bytes - 1] & ((1u << pad) - 1)) return TFDC_ERR_CORRUPT;
  }
  return TFDC_OK;
}

/* A varint that the parser has already validated (format 2 segment lengths). */
static uint64_t trusted_varint(const uint8_t **p) {
  uint64_t v = 0;
  unsigned shift = 0;
  const uint8_t *q = *p;
  while (*q & 0x80) {
    v |= (uint64_t)(*q++ & 0x7f) << shift;
    shift += 7;
  }
  v |= (uint64_t)*q++ << shift;
  *p = q;
  return v;
}

static void segment_open(stream *s) {
  if (s->varint_lens) {
    s->seg_bytes = trusted_varint(&s->seg_lens);
  } else {
    s->seg_bytes = ld32(s->seg_lens + 4 * s->seg);
  }
  s->seg_start = s->next_seg;
  s->next_seg += s->seg_bytes;
  s->seg_left = s->block;
  if (s->seg_left > s->left) s->seg_left = s->left;
  s->buf = 0;
  s->bits = 0;
  s->p = s->seg_start;
  s->over = 0;
}

/* Byte-wise refill near the end of the input; bytes past the segment read as
 * zero (a code that uses them is caught by segment_finish). */
static void refill_slow(stream *s) {
  const uint8_t *seg_end = s->seg_start + s->seg_bytes;
  while (s->bits <= 56) {
    if (s->p < seg_end) {
      s->buf |= (uint64_t)*s->p++ << (56 - s->bits);
    } else {
      s->over += 8;
    }
    s->bits += 8;
  }
}

#define HUFF_DECODE_ONE(dst)                                              \
  do {                                                                    \
    uint32_t e_ = tab[buf >> shift_primary];                              \
    if (TFDC_UNLIKELY(e_ & HE_SUB)) {                                     \
      unsigned sb_ = (e_ >> 8) & 15;                                      \
      e_ = tab[(e_ >> 16) + (uint32_t)((buf << TB) >> (64 - sb_))];       \
    }                                                                     \
    if (TFDC_UNLIKELY((e_ & 0xff) == 0)) return TFDC_ERR_CORRUPT;         \
    buf <<= (e_ & 0xff);                                                  \
    bits -= (e_ & 0xff);                                                  \
    (dst) = (uint16_t)(e_ >> 16);                                         \
  } while (0)

/* Decodes `n` symbols (n <= s->seg_left) of the current segment. */
static int segment_decode(stream *s, uint16_t *dst, uint32_t n) {
  const uint32_t *tab = s->h->e;
  const unsigned TB = s->h->bits, shift_primary = 64 - TB;
  uint64_t buf = s->buf;
  unsigned bits = s->bits;
  const uint8_t *p = s->p;
  uint32_t i = 0;
  /* Fast path: after a branchless refill there are >= 56 valid bits, enough
   * for three codes of up to 15 bits. Reads may run past the segment (never
   * past the input: fast_end is TFDC_IN_BOUNDS(p, 8, input) hoisted out of
   * the loop); segment_finish rejects a segment whose codes used them. */
  if (s->in_end - p >= 8) {
    const uint8_t *fast_end = s->in_end - 8;
    while (n - i >= 3 && p <= fast_end) {
      buf |= ld64be(p) >> bits;
      p += (63 - bits) >> 3;
      bits |= 56;
      HUFF_DECODE_ONE(dst[i]);
      HUFF_DECODE_ONE(dst[i + 1]);
      HUFF_DECODE_ONE(dst[i + 2]);
      i += 3;
    }
  }
  s->buf = buf;
  s->bits = bits;
  s->p = p;
  while (i < n) {
    if (s->bits < TFDC_MAX_CODE_LEN) refill_slow(s);
    if (s->over > 64) return TFDC_ERR_TRUNCATED; /* codes ran well past the segment */
    buf = s->buf;
    bits = s->bits;
    HUFF_DECODE_ONE(dst[i]);
    s->buf = buf;
    s->bits = bits;
    i++;
  }
  return TFDC_OK;
}

/* ======================================================================== */
/* 3b. The context-modelled range code, table kinds 3 and 4 (§5.3, §5.4)    */

/* A kind 3 or 4 table's frequencies, unpacked from the meta stream once,
 * when a stream first uses the table (section 5 builds it). Class table t
 * is kind 3's class c = t, or kind 4's (row group, column group, class). */
typedef struct rans_model {
  uint32_t prec, width, lag1, lag2, shift, classes; /* lag1 <= lag2 (a + b is symmetric) */
  uint32_t tables; /* T: classes, or row groups x column groups x classes (<= 256) */
  /* per class table (T entries each), in one allocation `mem` with fc and the maps: */
  uint32_t *first; /* its first listed symbol */
  uint32_t *m;     /* its listed symbols */
  uint32_t *base;  /* index of its first entry in fc */
  uint32_t *off;   /* base - first (mod 2^32): fc index of symbol s is off + s */
  uint32_t *fc;    /* one word per listed symbol: cum << 16 | freq (both <= 2^15) */
  /* Kind 4 with more than one group (0: every base is 0, decoded as kind 3):
   * row_len D, row_period P; col_base[q] = col_group[q] * C and row_base[r]
   * = row_group[r] * Gc * C, so symbol i's table is row_base[floor(i / D)
   * mod P] + col_base[i mod D] + c (< T <= 256: bytes suffice). */
  uint32_t row_len, row_period;
  uint8_t *col_base, *row_base;
  void *mem;
} rans_model;

/* Reads the state that starts a segment (§5.3): L <= x < 2^31. */
static int rans_segment_start(stream *s) {
  uint32_t x;
  /* the 4 bytes lie in the segment: v2_parse_stream checked segment_bytes >= 4 */
  if (s->seg_bytes < TFDC_RANS_STATE_BYTES) return TFDC_ERR_TRUNCATED;
  x = ld32(s->seg_start);
  if (x < TFDC_RANS_L || x >= TFDC_RANS_L << 8) return TFDC_ERR_CORRUPT;
  s->x = x;
  s->p = s->seg_start + TFDC_RANS_STATE_BYTES;
  s->k = 0;
  s->last = 1u << (s->rm->width - 1); /* level 0, biased */
  if (s->rm->row_len) { /* kind 4: where the segment starts, once per segment */
    uint64_t i0 = s->seg * s->block; /* < count */
    s->col = (uint32_t)(i0 % s->rm->row_len);
    s->row = (uint32_t)(i0 / s->rm->row_len % s->rm->row_period);
  }
  return TFDC_OK;
}

/* After the segment's last symbol the state is back at L and every byte of
 * the segment was read. */
static int rans_segment_finish(const stream *s) {
  if (s->x != TFDC_RANS_L || s->p != s->seg_start + s->seg_bytes) return TFDC_ERR_CORRUPT;
  return TFDC_OK;
}

/* What one symbol's decoding reads of the model, in locals of the loop. */
typedef struct {
  uint32_t prec, pmask, lag1, lag2, shift, top, bias, add;
  int32_t cbias;
  const uint32_t *fc, *off, *base, *m, *first;
  const uint16_t *lut16;
  const uint8_t *lut8;
  uint32_t row_len, row_period;       /* kind 4 */
  const uint8_t *col_base, *row_base; /* kind 4 */
} rans_consts;

static void rans_consts_of(const rans_model *m, const void *lut, rans_consts *k) {
  k->prec = m->prec;
  k->pmask = (1u << m->prec) - 1;
  k->lag1 = m->lag1;
  k->lag2 = m->lag2;
  k->shift = m->shift;
  k->top = m->classes - 1;
  k->bias = 1u << (m->width - 1); /* the biased level of level 0 */
  /* a + b = a' + b' - 2 bias, and floor(v / 2^shift) == ((v + 2^16) >> shift) - 2^16 / 2^shift
   * for v >= -2^16, shift <= 16: an unsigned shift, no signed division or
   * right shift of a negative number. */
  k->add = 65536u - 2 * k->bias;
  k->cbias = (int32_t)(65536u >> m->shift) - (int32_t)(m->classes / 2);
  k->fc = m->fc;
  k->off = m->off;
  k->base = m->base;
  k->m = m->m;
  k->first = m->first;
  k->lut16 = (const uint16_t *)lut;
  k->lut8 = (const uint8_t *)lut;
  k->row_len = m->row_len;
  k->row_period = m->row_period;
  k->col_base = m->col_base;
  k->row_base = m->row_base;
}

/* One segment being decoded: its bytes, state, and the symbols so far in a
 * ring (symbol k at ring[k & rmask]: the stream's ring of the last
 * rmask + 1 >= lag2 symbols, or the whole segment's output). */
typedef struct {
  const uint8_t *seg;
  uint64_t B, pos; /* the segment's length; its next byte */
  uint32_t x;      /* the state */
  uint32_t last;   /* the biased level of symbol k - 1 (before the segment: level 0) */
  uint16_t *ring;
  uint32_t rmask;
  uint32_t col, row, row_base; /* kind 4: symbol k's column, row (mod P), and row_base[row] */
} rans_lane;

#define RANS_FAIL 0xFFFFFFFFu /* rans_step: the segment ran out of bytes */

/* Symbol k of a lane: the loop body of §5.3. Levels are read biased,
 * level + 2^(w-1) = symbol XOR 2^(w-1) (non-negative); a position before
 * the segment's start reads as level 0 whatever the ring holds. With
 * `use_lut` (1: u16 entries; 2: u8 entries, for symbols of at most 8 bits:
 * half the cache footprint) the symbol comes from the class's slot lookup,
 * else from a binary search of its cumulative frequencies (streams too short
 * to pay for building the lookup). With `lag1_is_1` the previous level comes
 * from a register, not through memory: it is on the critical path (the next
 * class needs it). With `grouped` (kind 4) the class is offset by the
 * symbol's row and column bases, and the column and row counters move on;
 * they do not depend on the state, so they stay off the critical path.
 * Inlined with constant flags, so that each loop is compiled without the
 * tests. Returns the symbol or RANS_FAIL. */
static TFDC_ALWAYS_INLINE uint32_t rans_step(const rans_consts *K, rans_lane *l, uint32_t k,
                                             const int use_lut, const int lag1_is_1, const int grouped) {
  uint32_t a = lag1_is_1 ? l->last : k >= K->lag1 ? l->ring[(k - K->lag1) & l->rmask] ^ K->bias : K->bias;
  uint32_t b = k >= K->lag2 ? l->ring[(k - K->lag2) & l->rmask] ^ K->bias : K->bias;
  int32_t c = (int32_t)((a + b + K->add) >> K->shift) - K->cbias;
  uint32_t cl = c <= 0 ? 0u : (uint32_t)c, slot = l->x & K->pmask, sym, e, x, r;
  if (cl > K->top) cl = K->top;
  if (grouped) { /* cl becomes the class table t (< T: see rans_model) */
    cl += l->row_base + K->col_base[l->col];
    if (++l->col == K->row_len) {
      l->col = 0;
      if (++l->row == K->row_period) l->row = 0;
      l->row_base = K->row_base[l->row];
    }
  }
  if (use_lut) {
    sym = use_lut == 2 ? K->lut8[(cl << K->prec) | slot] : K->lut16[(cl << K->prec) | slot];
    e = K->fc[K->off[cl] + sym];
  } else {
    /* the last listed symbol with cum <= slot (it has freq > 0) */
    const uint32_t *f = K->fc + K->base[cl];
    uint32_t lo = 0, hi = K->m[cl];
    while (hi - lo > 1) {
      uint32_t mid = lo + (hi - lo) / 2;
      if ((f[mid] >> 16) <= slot) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    sym = K->first[cl] + lo;
    e = f[lo];
  }
  /* x < 2^31 stays true: f * (x >> prec) + f - 1 < 2^prec * 2^(31 - prec) */
  x = (e & 0xffffu) * (l->x >> K->prec) + slot - (e >> 16);
  /* Renormalise: x >= 2^(23 - prec) >= 2^8 here, so at most two bytes.
   * Where two bytes remain, branch-free (no mispredicted branch per symbol). */
  if (TFDC_LIKELY(TFDC_IN_BOUNDS(l->pos, 2, l->B))) {
    r = x < TFDC_RANS_L; /* 0 or 1: arithmetic, so that no compiler branches */
    x = (x << (8 * r)) | (l->seg[l->pos] & (0u - r));
    l->pos += r;
    r = x < TFDC_RANS_L;
    x = (x << (8 * r)) | (l->seg[l->pos] & (0u - r));
    l->pos += r;
  } else {
    while (x < TFDC_RANS_L) {
      if (!TFDC_IN_BOUNDS(l->pos, 1, l->B)) return RANS_FAIL;
      x = (x << 8) | l->seg[l->pos++];
    }
  }
  l->x = x;
  l->last = sym ^ K->bias;
  l->ring[k & l->rmask] = (uint16_t)sym;
  return sym;
}

/* Decodes `n` symbols (n <= s->seg_left) of the current segment, the
 * stream's ring holding the context. */
static TFDC_ALWAYS_INLINE int rans_run(stream *s, uint16_t *dst, uint32_t n, const int use_lut,
                                       const int lag1_is_1, const int grouped) {
  rans_consts K;
  rans_lane l;
  uint32_t i, k = s->k;
  int rc = TFDC_OK;
  rans_consts_of(s->rm, s->lut, &K);
  l.seg = s->seg_start;
  l.B = s->seg_bytes;
  l.pos = (uint64_t)(s->p - s->seg_start);
  l.x = s->x;
  l.last = s->last;
  l.ring = s->ring;
  l.rmask = s->ring_mask;
  l.col = s->col;
  l.row = s->row;
  l.row_base = grouped ? K.row_base[l.row] : 0;
  for (i = 0; i < n; i++, k++) {
    uint32_t sym = rans_step(&K, &l, k, use_lut, lag1_is_1, grouped);
    if (TFDC_UNLIKELY(sym == RANS_FAIL)) {
      rc = TFDC_ERR_TRUNCATED;
      break;
    }
    dst[i] = (uint16_t)sym;
  }
  s->x = l.x;
  s->k = k;
  s->last = l.last;
  s->col = l.col;
  s->row = l.row;
  s->p = l.seg + l.pos;
  return rc;
}

/* Segments of at most this many symbols are decoded whole into the
 * stream's buffer, two at a time in lockstep: within a segment every symbol
 * waits for the previous state (and class), but two segments' chains are
 * independent, so the processor overlaps their lookups. */
#define RANS_PAIR_BLOCK 65536u

/* Decodes whole the next one or two segments of a stream whose block is <=
 * RANS_PAIR_BLOCK into s->sbuf (segment j at [0, block), j + 1 after it). */
static TFDC_ALWAYS_INLINE int rans_pair(stream *s, const int use_lut, const int lag1_is_1,
                                        const int grouped) {
  rans_consts K;
  rans_lane l[2];
  uint64_t j = s->seg, n[2] = {0, 0};
  unsigned lanes = s->nseg - j >= 2 ? 2 : 1, q;
  uint32_t k;
  rans_consts_of(s->rm, s->lut, &K);
  for (q = 0; q < lanes; q++) {
    uint64_t first = (j + q) * s->block; /* < count */
    n[q] = s->count - first < s->block ? s->count - first : s->block;
    l[q].B = trusted_varint(&s->seg_lens);
    l[q].seg = s->next_seg;
    s->next_seg += l[q].B;
    /* the state: 4 bytes in the segment (v2_parse_stream checked >= 4) */
    if (l[q].B < TFDC_RANS_STATE_BYTES) return TFDC_ERR_TRUNCATED;
    l[q].x = ld32(l[q].seg);
    if (l[q].x < TFDC_RANS_L || l[q].x >= TFDC_RANS_L << 8) return TFDC_ERR_CORRUPT;
    l[q].pos = TFDC_RANS_STATE_BYTES;
    l[q].last = K.bias;
    l[q].ring = s->sbuf + q * s->block;
    l[q].rmask = 0xFFFFFFFFu; /* the whole segment's output */
    l[q].col = l[q].row = l[q].row_base = 0;
    if (grouped) { /* kind 4: where the segment starts, once per segment */
      l[q].col = (uint32_t)(first % K.row_len);
      l[q].row = (uint32_t)(first / K.row_len % K.row_period);
      l[q].row_base = K.row_base[l[q].row];
    }
  }
  /* lane 1 is the later segment: n[1] <= n[0] */
  for (k = 0; k < n[1]; k++) {
    uint32_t s0 = rans_step(&K, &l[0], k, use_lut, lag1_is_1, grouped);
    uint32_t s1 = rans_step(&K, &l[1], k, use_lut, lag1_is_1, grouped);
    if (TFDC_UNLIKELY((s0 | s1) == RANS_FAIL)) return TFDC_ERR_TRUNCATED;
  }
  for (; k < n[0]; k++)
    if (TFDC_UNLIKELY(rans_step(&K, &l[0], k, use_lut, lag1_is_1, grouped) == RANS_FAIL))
      return TFDC_ERR_TRUNCATED;
  /* after the last symbol the state is back at L, every byte read */
  for (q = 0; q < lanes; q++)
    if (l[q].x != TFDC_RANS_L || l[q].pos != l[q].B) return TFDC_ERR_CORRUPT;
  s->seg += lanes;
  s->sbuf_at = 0;
  s->sbuf_len = n[0] + n[1];
  return TFDC_OK;
}

/* rans_run and rans_pair, compiled for each kind of lookup and the common
 * lag 1, kind 3 and kind 4 apart. */
static int rans_decode(stream *s, uint16_t *dst, uint32_t n) {
  const int lag1_is_1 = s->rm->lag1 == 1, small = s->rm->width <= 8;
  if (s->rm->row_len) { /* kind 4 */
    if (!s->lut) return rans_run(s, dst, n, 0, 0, 1);
    if (small) return lag1_is_1 ? rans_run(s, dst, n, 2, 1, 1) : rans_run(s, dst, n, 2, 0, 1);
    return lag1_is_1 ? rans_run(s, dst, n, 1, 1, 1) : rans_run(s, dst, n, 1, 0, 1);
  }
  if (!s->lut) return rans_run(s, dst, n, 0, 0, 0);
  if (small) return lag1_is_1 ? rans_run(s, dst, n, 2, 1, 0) : rans_run(s, dst, n, 2, 0, 0);
  return lag1_is_1 ? rans_run(s, dst, n, 1, 1, 0) : rans_run(s, dst, n, 1, 0, 0);
}

static int rans_decode_pair(stream *s) {
  const int lag1_is_1 = s->rm->lag1 == 1, small = s->rm->width <= 8;
  if (s->rm->row_len) { /* kind 4 */
    if (!s->lut) return rans_pair(s, 0, 0, 1);
    if (small) return lag1_is_1 ? rans_pair(s, 2, 1, 1) : rans_pair(s, 2, 0, 1);
    return lag1_is_1 ? rans_pair(s, 1, 1, 1) : rans_pair(s, 1, 0, 1);
  }
  if (!s->lut) return rans_pair(s, 0, 0, 0);
  if (small) return lag1_is_1 ? rans_pair(s, 2, 1, 0) : rans_pair(s, 2, 0, 0);
  return lag1_is_1 ? rans_pair(s, 1, 1, 0) : rans_pair(s, 1, 0, 0);
}

/* stream_read of a kind 3 or 4 stream. */
static TFDC_NOINLINE int rans_read(stream *s, uint16_t *dst, uint32_t n) {
  uint32_t done = 0;
  if (s->sbuf) { /* whole segments, two at a time */
    while (done < n) {
      uint32_t take;
      if (s->sbuf_at == s->sbuf_len) TRY(rans_decode_pair(s));
      take = (uint64_t)(n - done) < s->sbuf_len - s->sbuf_at ? n - done
                                                              : (uint32_t)(s->sbuf_len - s->sbuf_at);
      memcpy(dst + done, s->sbuf + s->sbuf_at, sizeof(uint16_t) * take);
      done += take;
      s->sbuf_at += take;
      s->left -= take;
    }
    return TFDC_OK;
  }
  while (done < n) { /* streamed, the context in the ring */
    uint32_t take;
    if (s->seg_left == 0) {
      segment_open(s);
      TRY(rans_segment_start(s));
    }
    take = (uint64_t)(n - done) < s->seg_left ? n - done : (uint32_t)s->seg_left;
    TRY(rans_decode(s, dst + done, take));
    done += take;
    s->seg_left -= take;
    s->left -= take;
    if (s->seg_left == 0) {
      TRY(rans_segment_finish(s));
      s->seg++;
    }
  }
  return TFDC_OK;
}

/* stream_read of a prefix-coded or constant stream (a function of its own,
 * so that its loop compiles as tightly as before kind 3 existed). */
static TFDC_NOINLINE int prefix_read(stream *s, uint16_t *dst, uint32_t n) {
  uint32_t done = 0, i;
  int rc;
  if (s->constant) {
    for (i = 0; i < n; i++) dst[i] = s->symbol1;
    s->left -= n;
    return TFDC_OK;
  }
  while (done < n) {
    uint32_t take;
    if (s->seg_left == 0) segment_open(s);
    take = (uint64_t)(n - done) < s->seg_left ? n - done : (uint32_t)s->seg_left;
    if ((rc = segment_decode(s, dst + done, take))) return rc;
    done += take;
    s->seg_left -= take;
    s->left -= take;
    if (s->seg_left == 0) {
      if ((rc = segment_finish(s))) return rc;
      s->seg++;
    }
  }
  if (s->alphabet_check) { /* a fixed-length code wider than the alphabet */
    for (i = 0; i < n; i++)
      if (dst[i] >= s->alphabet_check) return TFDC_ERR_CORRUPT;
  }
  return TFDC_OK;
}

/* Returns the next `n` symbols of the stream (n <= s->left). */
static int stream_read(stream *s, uint16_t *dst, uint32_t n) {
  if (n > s->left) return TFDC_ERR_CORRUPT;
  return s->rm ? rans_read(s, dst, n) : prefix_read(s, dst, n);
}

/* ======================================================================== */
/* 4. Elements (§6.1-§6.3)                                                   */

static inline void st16(uint8_t *p, uint64_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static inline void st32(uint8_t *p, uint64_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}
static inline void st64(uint8_t *p, uint64_t v) {
  st32(p, v);
  st32(p + 4, v >> 32);
}

/* Writes element i (value v) of a record whose output starts at `out`.
 * Sub-byte elements are OR-ed into bytes the caller zeroed. */
static inline void put_elem(uint8_t *out, uint64_t i, uint64_t v, unsigned eb) {
  switch (eb) {
    case 2: out[i >> 2] |= (uint8_t)(v << (2 * (i & 3))); break;
    case 4: out[i >> 1] |= (uint8_t)(v << (4 * (i & 1))); break;
    case 8: out[i] = (uint8_t)v; break;
    case 16: st16(out + 2 * i, v); break;
    case 32: st32(out + 4 * i, v); break;
    default: st64(out + 8 * i, v); break;
  }
}

/* The inverse of a transform (§6.2) on w-bit values. */
static uint64_t inv_transform(uint64_t t, unsigned kind, unsigned w) {
  uint64_t mask = w >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << w) - 1);
  switch (kind) {
    case TFDC_TRANSFORM_ZIGZAG: return ((t >> 1) ^ ((t & 1) ? mask : 0)) & mask;
    case TFDC_TRANSFORM_ROTATE: return ((t >> 1) | ((t & 1) << (w - 1))) & mask;
    default: return t;
  }
}

/* binary16 -> binary32 by the integer rule of §6.3 (payloads kept). */
static uint32_t half_to_single(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 0x3ffu;
  if (e == 31) return s | 0x7f800000u | (m << 13);
  if (e == 0) {
    if (m == 0) return s;
    e = 127 - 15 + 1;
    while (!(m & 0x400u)) {
      m <<= 1;
      e--;
    }
    return s | (e << 23) | ((m & 0x3ffu) << 13);
  }
  return s | ((e - 15 + 127) << 23) | (m << 13);
}

/* Moves the (row, col) of a column-major scan over an [R, N/R] matrix
 * (§6.6, A.3.4) on by `step` positions. row < R <= N and step <= 2^16 (one
 * gap symbol): row + step cannot overflow. */
static inline void scan_advance(uint64_t *row, uint64_t *col, uint64_t step, uint64_t R) {
  *row += step;
  if (*row < R) return;
  if (*row - R < R) { /* the common case: into the next column */
    *row -= R;
    (*col)++;
  } else {
    *col += *row / R;
    *row %= R;
  }
}

/* ======================================================================== */
/* 5. Format 2 (§4-§7)                                                       */

/* Sequential reads of bytes [pos, end) of an untrusted buffer. */
typedef struct {
  const uint8_t *d;
  uint64_t pos, end;
} cursor;

/* A minimal LEB128 varint (§2): TRUNCATED if none starts before `end`,
 * CORRUPT if it runs past `end`, is longer than 10 bytes, exceeds 2^64 - 1
 * or is not minimal. */
static int cur_varint(cursor *c, uint64_t *v) {
  uint64_t x = 0;
  unsigned i;
  if (c->pos >= c->end) return TFDC_ERR_TRUNCATED;
  for (i = 0; i < TFDC_MAX_VARINT_BYTES; i++) {
    uint8_t b;
    if (!TFDC_IN_BOUNDS(c->pos + i, 1, c->end)) return TFDC_ERR_CORRUPT;
    b = c->d[c->pos + i];
    if (i == TFDC_MAX_VARINT_BYTES - 1 && b > 1) return TFDC_ERR_CORRUPT;
    x |= (uint64_t)(b & 0x7f) << (7 * i);
    if (b < 0x80) {
      if (b == 0 && i > 0) return TFDC_ERR_CORRUPT;
      c->pos += i + 1;
      *v = x;
      return TFDC_OK;
    }
  }
  return TFDC_ERR_CORRUPT;
}

/* A varint that must be <= max (else CORRUPT). */
static int cur_varint_max(cursor *c, uint64_t max, uint64_t *v) {
  int rc = cur_varint(c, v);
  if (rc) return rc;
  return *v > max ? TFDC_ERR_CORRUPT : TFDC_OK;
}

/* A varint that must lie in [min, max]. */
static int cur_varint_in(cursor *c, uint64_t min, uint64_t max, uint64_t *v) {
  int rc = cur_varint_max(c, max, v);
  if (rc) return rc;
  return *v < min ? TFDC_ERR_CORRUPT : TFDC_OK;
}

/* Skips n bytes; their position in *at. */
static int cur_take(cursor *c, uint64_t n, uint64_t *at) {
  if (!TFDC_IN_BOUNDS(c->pos, n, c->end)) return TFDC_ERR_TRUNCATED;
  *at = c->pos;
  c->pos += n;
  return TFDC_OK;
}

typedef struct {
  uint64_t S, Z;
  uint64_t flags; /* bit 0: kind 3 tables may appear; bit 1: kind 4; bit 2: patches */
  uint64_t C, M, F, D;
  uint64_t deflate_at; /* file position of the DEFLATE stream */
  uint64_t payload_at, payload_end;
} v2_header;

/* §7 steps 2-4: prefix, CRC, the header's varints and their rules. */
static int v2_read_header(const uint8_t *in, const located *L, uint64_t limit, int verify_crc,
                          v2_header *h) {
  const uint8_t *s = in + L->S;
  uint64_t end = L->S + L->Z, flags;
  cursor c;
  /* locate_section checked S + Z == file length and Z >= prefix + CRC. */
  if (!TFDC_IN_BOUNDS(L->S, TFDC_PREFIX_SIZE + TFDC_CRC_SIZE, L->model.f.len)) return TFDC_ERR_TRUNCATED;
  h->S = L->S;
  h->Z = L->Z;
  if (memcmp(s + TFDC_PREFIX_MAGIC, TFDC_MAGIC, 4) != 0) return TFDC_ERR_CORRUPT;
  if (ld16(s + TFDC_PREFIX_VERSION_MAJOR) != TFDC_FORMAT_MAJOR) return TFDC_ERR_VERSION;
  /* The CRC before anything else of the section is interpreted (§7 step 3). */
  if (verify_crc && !crc_ok(crc32_bytes(in, end - TFDC_CRC_SIZE), ld32(in + end - TFDC_CRC_SIZE)))
    return TFDC_ERR_CHECKSUM;
  c.d = in;
  c.pos = L->S + TFDC_PREFIX_SIZE;
  c.end = end - TFDC_CRC_SIZE;
  TRY(cur_varint(&c, &flags));
  if (flags & ~(uint64_t)TFDC_KNOWN_FLAGS) return TFDC_ERR_CORRUPT;
  h->flags = flags;
  TRY(cur_varint(&c, &h->C));
  TRY(cur_varint(&c, &h->M));
  TRY(cur_varint(&c, &h->F));
  TRY(cur_varint(&c, &h->D));
  if (h->D > limit || h->M > limit) return TFDC_ERR_TOO_LARGE;
  if (h->F < 8 || h->F > h->M) return TFDC_ERR_CORRUPT;
  if (h->D < h->F) return TFDC_ERR_CORRUPT;
  TRY(cur_take(&c, h->C, &h->deflate_at));
  /* Before the meta stream's allocation: 2 KB claiming M = 2^31 cost 2 GiB
   * of scratch (NOMEM on armv7) where no C bytes inflate to more than this. */
  if (h->M / TFDC_DEFLATE_MAX_RATIO > h->C ||
      (h->M / TFDC_DEFLATE_MAX_RATIO == h->C && h->M % TFDC_DEFLATE_MAX_RATIO)) /* M > 1032 C */
    return TFDC_ERR_CORRUPT;
  h->payload_at = c.pos;
  h->payload_end = c.end;
  return TFDC_OK;
}

/* Inflates the C bytes at src into dst (capacity M + 1): exactly one raw
 * DEFLATE stream with the preset dictionary, ending in its last byte and
 * giving exactly M bytes (§4). */
static int v2_inflate(const uint8_t *src, uint64_t C, uint8_t *dst, uint64_t M) {
  z_stream z;
  uint64_t in_left = C, out_left = M + 1, produced;
  int ret, rc = TFDC_OK;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, TFDC_DEFLATE_WBITS) != Z_OK) return TFDC_ERR_NOMEM;
  ret = inflateSetDictionary(&z, tfdc_dictionary, TFDC_DICTIONARY_SIZE);
  if (ret != Z_OK) { /* zlib allocates the window here */
    inflateEnd(&z);
    return ret == Z_MEM_ERROR ? TFDC_ERR_NOMEM : TFDC_ERR_CORRUPT;
  }
  z.next_in = (Bytef *)(uintptr_t)src; /* zlib never writes through next_in */
  z.next_out = dst;
  for (;;) {
    if (z.avail_in == 0 && in_left > 0) {
      z.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
      in_left -= z.avail_in;
    }
    if (z.avail_out == 0 && out_left > 0) {
      z.avail_out = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
      out_left -= z.avail_out;
    }
    ret = inflate(&z, Z_NO_FLUSH);
    if (ret == Z_STREAM_END) break;
    if (ret == Z_MEM_ERROR) {
      rc = TFDC_ERR_NOMEM;
      break;
    }
    if (ret != Z_OK && ret != Z_BUF_ERROR) { /* invalid data, a dictionary request */
      rc = TFDC_ERR_CORRUPT;
      break;
    }
    if (z.avail_out == 0 && out_left == 0) { /* more than M bytes */
      rc = TFDC_ERR_CORRUPT;
      break;
    }
    if ((z.avail_in == 0 && in_left == 0) || ret == Z_BUF_ERROR) { /* input used up, no final block */
      rc = TFDC_ERR_TRUNCATED;
      break;
    }
  }
  produced = (M + 1) - out_left - z.avail_out;
  if (rc == TFDC_OK && (z.avail_in != 0 || in_left != 0)) rc = TFDC_ERR_CORRUPT; /* bytes after */
  if (rc == TFDC_OK && produced != M) rc = TFDC_ERR_CORRUPT;
  inflateEnd(&z);
  return rc;
}

/* One code table of the meta stream (§5.1). */
typedef struct {
  uint8_t kind, max_len;
  uint8_t prec, width, shift, classes; /* kinds 3, 4 */
  uint16_t lag1, lag2;                 /* kinds 3, 4 */
  uint16_t tables;                     /* kinds 3, 4: class tables T (kind 3: classes) */
  uint32_t n;       /* alphabet size: every symbol it codes is < n */
  uint32_t symbol;  /* kind 1 */
  uint32_t m;       /* kind 0: coded symbols; kinds 3, 4: listed symbols of all class tables */
  uint64_t gaps_at; /* kind 0: meta position of the symbol gaps (then the lengths);
                       kinds 3, 4: of the field after `classes` (kind 4's row_len, or
                       kind 3's first class table); v2_rans_model reads on from there */
  rans_model *rm;   /* kinds 3, 4: built when a stream first uses the table */
} v2_table; /* 40 bytes on LP64, as many as before kind 4: up to (M - F) / 2 of them */

static int is_rans_kind(unsigned kind) { return kind == TFDC_TABLE_RANS || kind == TFDC_TABLE_RANS_GROUPED; }

/* A group map of kind 4 (§5.4): `count` varints, each < groups. */
static int v2_parse_group_map(cursor *c, uint64_t count, uint64_t groups) {
  uint64_t j, v;
  for (j = 0; j < count; j++) TRY(cur_varint_max(c, groups - 1, &v));
  return TFDC_OK;
}

/* A kind 3 or 4 table's fields after `kind` (§5.3, §5.4), every rule
 * checked. */
static int v2_parse_rans_table(cursor *c, v2_table *t) {
  uint64_t first, m, j, f, sum, cl, top = 0, total = 0, D = 1, P = 1, Gc = 1, Gr = 1;
  /* prec, width, lag1, lag2, shift, classes and their ranges */
  static const uint64_t lo[6] = {1, 1, 1, 1, 0, 1};
  static const uint64_t hi[6] = {TFDC_MAX_RANS_PREC, TFDC_MAX_RANS_WIDTH, TFDC_MAX_RANS_LAG,
                                 TFDC_MAX_RANS_LAG, TFDC_MAX_RANS_SHIFT, TFDC_MAX_RANS_CLASSES};
  uint64_t field[6];
  for (j = 0; j < 6; j++) TRY(cur_varint_in(c, lo[j], hi[j], &field[j]));
  t->prec = (uint8_t)field[0];
  t->width = (uint8_t)field[1];
  t->lag1 = (uint16_t)field[2];
  t->lag2 = (uint16_t)field[3];
  t->shift = (uint8_t)field[4];
  t->classes = (uint8_t)field[5];
  t->gaps_at = c->pos;
  if (t->kind == TFDC_TABLE_RANS_GROUPED) {
    /* Gc and Gr are bounded by T = Gr Gc C <= 256 (C >= 1) before they are
     * multiplied, so the product cannot wrap. */
    TRY(cur_varint_in(c, 1, TFDC_MAX_RANS_ROW_LEN, &D));
    TRY(cur_varint_in(c, 1, TFDC_MAX_RANS_TABLES, &Gc));
    TRY(v2_parse_group_map(c, D, Gc));
    TRY(cur_varint_in(c, 1, TFDC_MAX_RANS_ROW_PERIOD, &P));
    TRY(cur_varint_in(c, 1, TFDC_MAX_RANS_TABLES, &Gr));
    if (Gr * Gc * t->classes > TFDC_MAX_RANS_TABLES) return TFDC_ERR_CORRUPT;
    TRY(v2_parse_group_map(c, P, Gr));
  }
  t->tables = (uint16_t)(Gr * Gc * t->classes); /* <= 256 */
  for (cl = 0; cl < t->tables; cl++) {
    TRY(cur_varint(c, &first));
    TRY(cur_varint(c, &m));
    /* 1 <= m and first + m <= 2^w, without overflow */
    if (m < 1 || first > (1u << t->width) || m > (1u << t->width) - first) return TFDC_ERR_CORRUPT;
    if (m > c->end - c->pos) return TFDC_ERR_TRUNCATED; /* a byte per frequency at least */
    for (j = 0, sum = 0; j < m; j++) {
      TRY(cur_varint_max(c, 1u << t->prec, &f));
      sum += f; /* < 2^15 * 2^15 */
      if (f && first + j > top) top = first + j;
    }
    if (sum != 1u << t->prec) return TFDC_ERR_CORRUPT;
    total += m; /* <= 256 * 2^15 */
  }
  t->m = (uint32_t)total;
  t->n = (uint32_t)top + 1; /* every class table has a symbol of nonzero frequency */
  return TFDC_OK;
}

static int v2_parse_table(cursor *c, uint64_t flags, v2_table *t) {
  uint64_t kind, v, j, sym = 0, kraft = 0, lengths_at;
  unsigned maxl = 0;
  TRY(cur_varint(c, &kind));
  memset(t, 0, sizeof *t);
  t->kind = (uint8_t)kind;
  if (kind == TFDC_TABLE_RANS) {
    if (!(flags & TFDC_FLAG_RANS)) return TFDC_ERR_CORRUPT; /* a 2.0 file has none */
    return v2_parse_rans_table(c, t);
  }
  if (kind == TFDC_TABLE_RANS_GROUPED) {
    if (!(flags & TFDC_FLAG_RANS_GROUPED)) return TFDC_ERR_CORRUPT; /* 2.0 and 2.1 files have none */
    return v2_parse_rans_table(c, t);
  }
  if (kind == TFDC_TABLE_SINGLE) {
    TRY(cur_varint_max(c, TFDC_MAX_ALPHABET - 1, &v));
    t->symbol = (uint32_t)v;
    t->n = (uint32_t)v + 1;
    return TFDC_OK;
  }
  if (kind == TFDC_TABLE_FIXED) {
    TRY(cur_varint_max(c, TFDC_MAX_FIXED_WIDTH, &v));
    if (v < 1) return TFDC_ERR_CORRUPT;
    t->max_len = (uint8_t)v;
    t->n = 1u << v;
    return TFDC_OK;
  }
  if (kind != TFDC_TABLE_HUFFMAN) return TFDC_ERR_CORRUPT;
  TRY(cur_varint_max(c, TFDC_MAX_ALPHABET, &v));
  if (v < 2) return TFDC_ERR_CORRUPT; /* one symbol is a kind 1 table */
  t->m = (uint32_t)v;
  if (t->m > c->end - c->pos) return TFDC_ERR_TRUNCATED; /* a byte per gap at least */
  t->gaps_at = c->pos;
  for (j = 0; j < t->m; j++) {
    TRY(cur_varint(c, &v));
    if (v >= TFDC_MAX_ALPHABET) return TFDC_ERR_CORRUPT;
    sym = j == 0 ? v : sym + v + 1;
    if (sym >= TFDC_MAX_ALPHABET) return TFDC_ERR_CORRUPT;
  }
  TRY(cur_take(c, (t->m + 1) / 2, &lengths_at));
  if ((t->m & 1) && (c->d[lengths_at + t->m / 2] >> 4) != 0) return TFDC_ERR_CORRUPT;
  for (j = 0; j < t->m; j++) {
    unsigned l = (c->d[lengths_at + j / 2] >> (4 * (j & 1))) & 15;
    if (l == 0) return TFDC_ERR_CORRUPT;
    kraft += (uint64_t)1 << (TFDC_MAX_CODE_LEN - l);
    if (l > maxl) maxl = l;
  }
  if (kraft != (uint64_t)1 << TFDC_MAX_CODE_LEN) return TFDC_ERR_CORRUPT; /* complete codes only */
  t->max_len = (uint8_t)maxl;
  t->n = (uint32_t)sym + 1;
  return TFDC_OK;
}

/* A stream descriptor (§5.2), its segments placed in the payload. */
typedef struct {
  int64_t table; /* -1: no stream */
  uint64_t count, block, nseg;
  uint32_t alphabet;
  uint64_t seglens_at; /* meta position of the segment lengths */
  uint64_t data_at;    /* file position of the first segment */
} v2_stream;

typedef struct {
  const uint8_t *in;
  size_t in_len;
  v2_header h;
  uint8_t *meta; /* M + 1 bytes */
  cursor mc;     /* the descriptors: meta [F, M) */
  uint64_t pay_pos;
  fb_buffer *bufs; /* the inner Model.buffers */
  uint32_t num_buffers;
  v2_table *tables;
  uint64_t num_tables;
  uint8_t *out;
  /* scratch */
  htab slots[MAX_STREAMS];
  /* kinds 3 and 4, per stream slot of a record (0: gaps, 1 + p: values / plane p):
   * the slot lookup (built for table lut_for) and the ring of levels */
  void *lut[MAX_STREAMS];
  uint64_t lut_cap[MAX_STREAMS]; /* bytes */
  int64_t lut_for[MAX_STREAMS];
  uint16_t *ring[MAX_STREAMS]; /* a stream's ring, or its buffer of two segments */
  uint32_t ring_cap[MAX_STREAMS];
  uint8_t *lens;    /* TFDC_MAX_ALPHABET code lengths */
  uint16_t *sorted; /* TFDC_MAX_ALPHABET symbols */
  uint64_t *codebook; /* TFDC_MAX_CODEBOOK entries */
  uint16_t *sym;    /* MAX_STREAMS * CHUNK symbols */
  uint64_t *vals;   /* CHUNK values */
} v2_ctx;

static int v2_parse_stream(v2_ctx *x, uint64_t count, uint64_t alphabet, v2_stream *st) {
  cursor *c = &x->mc;
  uint64_t index, j, total = 0, at;
  const v2_table *t;
  memset(st, 0, sizeof *st);
  st->count = count;
  st->alphabet = (uint32_t)alphabet;
  TRY(cur_varint(c, &index));
  if (index >= x->num_tables) return TFDC_ERR_CORRUPT;
  st->table = (int64_t)index;
  t = &x->tables[index];
  if (t->kind == TFDC_TABLE_SINGLE) return t->symbol >= alphabet ? TFDC_ERR_CORRUPT : TFDC_OK;
  if ((t->kind == TFDC_TABLE_HUFFMAN || is_rans_kind(t->kind)) && t->n > alphabet)
    return TFDC_ERR_CORRUPT;
  TRY(cur_varint_max(c, TFDC_MAX_BLOCK, &st->block));
  if (st->block < 1) return TFDC_ERR_CORRUPT;
  st->nseg = count / st->block + (count % st->block != 0);
  if (st->nseg > c->end - c->pos) return TFDC_ERR_TRUNCATED; /* a byte per length at least */
  st->seglens_at = c->pos;
  for (j = 0; j < st->nseg; j++) {
    uint64_t len, syms = j + 1 < st->nseg ? st->block : count - j * st->block;
    TRY(cur_varint(c, &len));
    if (is_rans_kind(t->kind)) {
      if (len < TFDC_RANS_STATE_BYTES) return TFDC_ERR_TRUNCATED; /* the state at least */
    } else if (len < syms / 8 + (syms % 8 != 0)) {                /* codes are >= 1 bit */
      return TFDC_ERR_CORRUPT;
    }
    total = len > UINT64_MAX - total ? UINT64_MAX : total + len;
  }
  if (!TFDC_IN_BOUNDS(x->pay_pos, total, x->h.payload_end)) return TFDC_ERR_TRUNCATED;
  at = x->pay_pos;
  x->pay_pos += total;
  st->data_at = at;
  return TFDC_OK;
}

/* A decoding table for table `index`: one already built is shared; else a
 * slot not in `busy` (the slots this record's other streams use) is built. */
static int v2_table_slot(v2_ctx *x, uint64_t index, unsigned *busy, const htab **out) {
  const v2_table *t = &x->tables[index];
  unsigned k, free_slot = MAX_STREAMS;
  htab *h;
  for (k = 0; k < MAX_STREAMS; k++) {
    if (x->slots[k].built_for == (int64_t)index) {
      *busy |= 1u << k;
      *out = &x->slots[k];
      return TFDC_OK;
    }
    if (free_slot == MAX_STREAMS && !(*busy & (1u << k))) free_slot = k;
  }
  h = &x->slots[free_slot]; /* MAX_STREAMS slots for at most MAX_STREAMS streams */
  if (!h->e && !(h->e = (uint32_t *)malloc(sizeof(uint32_t) * HTAB_ENTRIES))) return TFDC_ERR_NOMEM;
  memset(x->lens, 0, t->n);
  if (t->kind == TFDC_TABLE_FIXED) {
    memset(x->lens, t->max_len, t->n);
  } else {
    /* Kind 0: symbols from the (validated) gaps, lengths from the nibbles. */
    const uint8_t *g = x->meta + t->gaps_at, *nib;
    uint32_t j, sym = 0;
    for (j = 0; j < t->m; j++) {
      uint32_t gap = (uint32_t)trusted_varint(&g);
      sym = j == 0 ? gap : sym + gap + 1;
      x->sorted[j] = (uint16_t)sym;
    }
    nib = g;
    for (j = 0; j < t->m; j++) x->lens[x->sorted[j]] = (nib[j / 2] >> (4 * (j & 1))) & 15;
  }
  build_htab(h, x->lens, t->n, t->max_len, x->sorted);
  h->built_for = (int64_t)index;
  *busy |= 1u << free_slot;
  *out = h;
  return TFDC_OK;
}

/* Kinds 3 and 4: a stream builds the slot lookup (T * 2^prec stores) only
 * if it has at least T * 2^prec / RANS_LUT_RATIO symbols; shorter ones
 * search the cumulative frequencies. So the work stays proportional to the
 * input and output however many short streams use a large table. */
#define RANS_LUT_RATIO 16u

/* A kind 3 or 4 table's frequencies and maps from its (validated) meta
 * bytes, once. Their size is bounded by the table's bytes: a byte per
 * listed symbol, class table and map entry at least. */
static int v2_rans_model(v2_ctx *x, v2_table *t) {
  rans_model *m;
  const uint8_t *q = x->meta + t->gaps_at, *cols = q, *rows = q;
  const uint32_t T = t->tables;
  uint32_t c, j, at = 0, D = 0, P = 0, Gc = 1, Gr = 1;
  size_t words = 4 * (size_t)T + t->m; /* first, m, base, off; fc */
  if (t->rm) return TFDC_OK;
  if (t->kind == TFDC_TABLE_RANS_GROUPED) { /* the maps, validated by v2_parse_rans_table */
    D = (uint32_t)trusted_varint(&q);
    Gc = (uint32_t)trusted_varint(&q);
    cols = q;
    for (j = 0; j < D; j++) (void)trusted_varint(&q);
    P = (uint32_t)trusted_varint(&q);
    Gr = (uint32_t)trusted_varint(&q);
    rows = q;
    for (j = 0; j < P; j++) (void)trusted_varint(&q);
    if (Gc * Gr == 1) D = P = 0; /* one group: every base is 0, kind 3's loops */
  }
  if (!(m = t->rm = (rans_model *)calloc(1, sizeof *m))) return TFDC_ERR_NOMEM;
  m->mem = malloc(sizeof(uint32_t) * words + (size_t)D + P);
  if (!m->mem) return TFDC_ERR_NOMEM;
  m->first = (uint32_t *)m->mem;
  m->m = m->first + T;
  m->base = m->m + T;
  m->off = m->base + T;
  m->fc = m->off + T;
  m->prec = t->prec;
  m->width = t->width;
  m->lag1 = t->lag1 < t->lag2 ? t->lag1 : t->lag2;
  m->lag2 = t->lag1 < t->lag2 ? t->lag2 : t->lag1;
  m->shift = t->shift;
  m->classes = t->classes;
  m->tables = T;
  if (D) { /* more than one group */
    m->row_len = D;
    m->row_period = P;
    m->col_base = (uint8_t *)(m->fc + t->m);
    m->row_base = m->col_base + D;
    /* (row_group Gc + col_group) C + c = row_group Gc C + col_group C + c */
    for (j = 0; j < D; j++) m->col_base[j] = (uint8_t)(trusted_varint(&cols) * t->classes);
    for (j = 0; j < P; j++) m->row_base[j] = (uint8_t)(trusted_varint(&rows) * Gc * t->classes);
  }
  for (c = 0; c < T; c++) {
    uint32_t first = (uint32_t)trusted_varint(&q), cnt = (uint32_t)trusted_varint(&q), cum = 0;
    m->first[c] = first;
    m->m[c] = cnt;
    m->base[c] = at;
    m->off[c] = at - first; /* mod 2^32: off + s == at + (s - first) */
    for (j = 0; j < cnt; j++) {
      uint32_t f = (uint32_t)trusted_varint(&q);
      m->fc[at++] = (cum << 16) | f;
      cum += f;
    }
  }
  return TFDC_OK;
}

/* The slot lookup of every class table: slot r of table c holds the symbol
 * s with cum_c(s) <= r < cum_c(s) + f_c(s); each table's frequencies sum to
 * 2^prec, so every slot is written once. u8 entries where symbols have <= 8
 * bits. */
static void rans_build_lut(const rans_model *m, void *lut) {
  uint32_t c, j;
  for (c = 0; c < m->tables; c++) {
    const uint32_t *f = m->fc + m->base[c];
    for (j = 0; j < m->m[c]; j++) {
      size_t at = ((size_t)c << m->prec) + (f[j] >> 16), r, freq = f[j] & 0xffffu;
      if (m->width <= 8) {
        memset((uint8_t *)lut + at, (int)(m->first[c] + j), freq);
      } else {
        uint16_t *d = (uint16_t *)lut + at;
        for (r = 0; r < freq; r++) d[r] = (uint16_t)(m->first[c] + j);
      }
    }
  }
}

/* Opens a kind 3 or 4 stream in stream slot `slot`: the model, the buffer of two
 * whole segments (block <= RANS_PAIR_BLOCK) or else the ring (as long as
 * the larger lag, rounded up to a power of two) and, for a long enough
 * stream, the slot lookup. */
static int v2_open_rans(v2_ctx *x, const v2_stream *st, unsigned slot, stream *s) {
  v2_table *t = &x->tables[st->table];
  const rans_model *m;
  uint64_t need, cells, R = 1;
  TRY(v2_rans_model(x, t));
  m = s->rm = t->rm;
  if (st->block <= RANS_PAIR_BLOCK) { /* two whole segments */
    R = 2 * st->block < st->count ? 2 * st->block : st->count;
  } else { /* the larger lag (< block) */
    need = m->lag2 < st->count ? m->lag2 : st->count;
    while (R < need) R <<= 1; /* <= 2^16 */
  }
  if (x->ring_cap[slot] < R) {
    free(x->ring[slot]);
    x->ring_cap[slot] = 0;
    if (!(x->ring[slot] = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)R))) return TFDC_ERR_NOMEM;
    x->ring_cap[slot] = (uint32_t)R;
  }
  if (st->block <= RANS_PAIR_BLOCK) {
    s->sbuf = x->ring[slot];
  } else {
    s->ring = x->ring[slot];
    s->ring_mask = (uint32_t)R - 1;
  }
  cells = (uint64_t)m->tables << m->prec; /* <= 2^23 */
  if (x->lut_for[slot] != st->table && st->count >= (cells + RANS_LUT_RATIO - 1) / RANS_LUT_RATIO) {
    uint64_t bytes = cells * (m->width <= 8 ? 1 : 2);
    if (x->lut_cap[slot] < bytes) {
      free(x->lut[slot]);
      x->lut_cap[slot] = 0;
      x->lut_for[slot] = -1;
      if (!(x->lut[slot] = malloc((size_t)bytes))) return TFDC_ERR_NOMEM;
      x->lut_cap[slot] = bytes;
    }
    rans_build_lut(m, x->lut[slot]);
    x->lut_for[slot] = st->table;
  }
  s->lut = x->lut_for[slot] == st->table ? x->lut[slot] : NULL;
  return TFDC_OK;
}

static int v2_open_stream(v2_ctx *x, const v2_stream *st, unsigned slot, unsigned *busy, stream *s) {
  const v2_table *t;
  memset(s, 0, sizeof *s);
  s->count = s->left = st->count;
  if (st->table < 0 || st->count == 0) return TFDC_OK;
  t = &x->tables[st->table];
  if (t->kind == TFDC_TABLE_SINGLE) {
    s->constant = 1;
    s->symbol1 = (uint16_t)t->symbol;
    return TFDC_OK;
  }
  if (is_rans_kind(t->kind)) {
    TRY(v2_open_rans(x, st, slot, s));
  } else {
    TRY(v2_table_slot(x, (uint64_t)st->table, busy, &s->h));
  }
  if (t->kind == TFDC_TABLE_FIXED && t->n > st->alphabet) s->alphabet_check = st->alphabet;
  s->block = st->block;
  s->seg_lens = x->meta + st->seglens_at;
  s->varint_lens = 1;
  s->nseg = st->nseg;
  s->next_seg = x->in + st->data_at;
  s->in_end = x->in + x->in_len;
  return TFDC_OK;
}

/* One record, parsed (§6). */
typedef struct {
  uint64_t out_offset, out_size, N, R, nnz, G, K;
  unsigned eb, transform, value_mode, position_mode, expand, planes;
  v2_stream gaps, values[TFDC_MAX_PLANES];
} v2_record;

/* Reads the codebook (§6.4) into x->codebook: keys, inverse transform on kb
 * bits, binary16 expansion. */
static int v2_parse_codebook(v2_ctx *x, v2_record *r) {
  cursor *c = &x->mc;
  unsigned kb = r->expand ? TFDC_FP16_KEY_BITS : r->eb;
  uint64_t maxkey = kb >= 64 ? UINT64_MAX : ((uint64_t)1 << kb) - 1;
  uint64_t key, width, nbits, at, j, bit;
  const uint8_t *d;
  TRY(cur_varint_max(c, TFDC_MAX_CODEBOOK, &r->K));
  if (r->nnz && !r->K) return TFDC_ERR_CORRUPT;
  if (!r->K) return TFDC_OK;
  TRY(cur_varint(c, &key));
  TRY(cur_varint_max(c, kb, &width));
  if (key > maxkey) return TFDC_ERR_CORRUPT;
  nbits = (r->K - 1) * width; /* < 2^15 * 2^6 */
  TRY(cur_take(c, nbits / 8 + (nbits % 8 != 0), &at));
  d = c->d + at;
  if ((nbits % 8) && (d[nbits / 8] & ((1u << (8 - nbits % 8)) - 1))) return TFDC_ERR_CORRUPT;
  for (j = 0, bit = 0; j < r->K; j++) {
    uint64_t e;
    if (j > 0) {
      uint64_t delta = 0, b;
      for (b = 0; b < width; b++, bit++) delta = (delta << 1) | ((d[bit >> 3] >> (7 - (bit & 7))) & 1);
      if (delta >= maxkey - key) return TFDC_ERR_CORRUPT; /* key + delta + 1 > maxkey */
      key += delta + 1;
    }
    e = inv_transform(key, r->transform, kb);
    x->codebook[j] = r->expand ? half_to_single((uint16_t)e) : e;
  }
  return TFDC_OK;
}

/* §6 (and §6.7): the fields of a descriptor after its output range — a
 * record's after buffer_index, a patch's after out_size — every rule
 * checked, payload assigned. The caller has checked the range (nonempty,
 * within [0, D)). */
static int v2_parse_fields(v2_ctx *x, uint64_t out_offset, uint64_t out_size, v2_record *r) {
  cursor *c = &x->mc;
  uint64_t v, gap_count, p, values;
  memset(r, 0, sizeof *r);
  r->gaps.table = -1;
  r->out_offset = out_offset;
  r->out_size = out_size;
  TRY(cur_varint(c, &v));
  if (v != 2 && v != 4 && v != 8 && v != 16 && v != 32 && v != 64) return TFDC_ERR_CORRUPT;
  r->eb = (unsigned)v;
  if (r->eb >= 8) {
    if (r->out_size % (r->eb / 8)) return TFDC_ERR_CORRUPT;
    r->N = r->out_size / (r->eb / 8);
  } else {
    r->N = r->out_size * (8 / r->eb); /* out_size <= D <= SIZE_MAX / 1 checked by the caller */
  }
  TRY(cur_varint(c, &v));
  r->transform = v > 0xff ? 0xff : (unsigned)v;
  TRY(cur_varint(c, &v));
  r->value_mode = v > 0xff ? 0xff : (unsigned)v;
  TRY(cur_varint(c, &v));
  r->position_mode = v > 0xff ? 0xff : (unsigned)v;
  if (r->transform > TFDC_TRANSFORM_ROTATE || r->value_mode > TFDC_VALUES_PLANES ||
      r->position_mode > TFDC_POSITION_SPARSE)
    return TFDC_ERR_CORRUPT;
  TRY(cur_varint(c, &r->R));
  if (r->R < 1 || r->N % r->R) return TFDC_ERR_CORRUPT;
  r->nnz = r->N;
  if (r->position_mode == TFDC_POSITION_SPARSE) {
    TRY(cur_varint_max(c, r->N, &r->nnz));
    TRY(cur_varint(c, &r->G));
    if (r->G < TFDC_MIN_GAP_ALPHABET || r->G > TFDC_MAX_GAP_ALPHABET) return TFDC_ERR_CORRUPT;
    TRY(cur_varint(c, &gap_count));
    /* Fillers advance G - 1 positions each, values at least 1, and every
     * position stays below N. */
    if (r->nnz == 0 ? gap_count != 0
                    : gap_count < r->nnz || gap_count - r->nnz > (r->N - r->nnz) / (r->G - 1))
      return TFDC_ERR_CORRUPT;
    if (gap_count) TRY(v2_parse_stream(x, gap_count, r->G, &r->gaps));
  }
  values = r->nnz;
  if (r->value_mode == TFDC_VALUES_CODEBOOK) {
    TRY(cur_varint(c, &v));
    if (v > TFDC_EXPAND_FP16 || (v == TFDC_EXPAND_FP16 && r->eb != 32)) return TFDC_ERR_CORRUPT;
    r->expand = (unsigned)v;
    TRY(v2_parse_codebook(x, r));
    r->values[0].table = -1;
    if (values) TRY(v2_parse_stream(x, values, r->K, &r->values[0]));
  } else {
    r->planes = r->eb >= 8 ? r->eb / 8 : 1;
    for (p = 0; p < r->planes; p++) {
      r->values[p].table = -1;
      if (values) TRY(v2_parse_stream(x, values, (uint64_t)1 << (r->eb < 8 ? r->eb : 8), &r->values[p]));
    }
  }
  return TFDC_OK;
}

/* §6.1: a record's output range is its buffer's, after the inner
 * flatbuffer, aligned, in increasing order. */
static int v2_parse_record(v2_ctx *x, uint64_t prev_end, v2_record *r) {
  uint64_t bi, off, size;
  const fb_buffer *ref;
  TRY(cur_varint(&x->mc, &bi));
  if (bi >= x->num_buffers) return TFDC_ERR_CORRUPT;
  ref = &x->bufs[bi];
  off = ref->offset;
  size = ref->size;
  if (off <= 1 || size == 0 || ref->has_data) return TFDC_ERR_CORRUPT;
  if (off % TFDC_OUTPUT_ALIGN_REQUIRED || off < x->h.F || off < prev_end || off > x->h.D ||
      size > x->h.D - off)
    return TFDC_ERR_CORRUPT;
  return v2_parse_fields(x, off, size, r);
}

/* §6.7: a patch's output range is given in its descriptor: inside the inner
 * flatbuffer, in increasing order, unaligned, and over bytes the meta
 * stream has as zeros (the encoder cleared them; the patch is their only
 * content, so a decoder cannot be made to mix two). */
static int v2_parse_patch(v2_ctx *x, uint64_t prev_end, v2_record *r) {
  uint64_t off, size, i;
  TRY(cur_varint(&x->mc, &off));
  TRY(cur_varint(&x->mc, &size));
  /* out_offset + out_size <= F, without a sum that can wrap */
  if (size == 0 || off < prev_end || !TFDC_IN_BOUNDS(off, size, x->h.F)) return TFDC_ERR_CORRUPT;
  for (i = 0; i < size; i++)
    if (x->meta[off + i]) return TFDC_ERR_CORRUPT;
  return v2_parse_fields(x, off, size, r);
}

/* §6.7: the inner flatbuffer read again from the decoded bytes [0, F) gives
 * the same Model.buffers as from the meta stream, so patches cannot move a
 * record's target or create a buffer. A read out of range is FLATBUFFER
 * (fb_open reads every entry), a difference CORRUPT. */
static int v2_check_reread(const v2_ctx *x) {
  fb_model again;
  uint32_t j;
  TRY(fb_open(&again, x->out, x->h.F));
  if (again.num_buffers != x->num_buffers) return TFDC_ERR_CORRUPT;
  for (j = 0; j < x->num_buffers; j++) {
    fb_buffer b;
    const fb_buffer *a = &x->bufs[j];
    TRY(fb_get_buffer(&again, j, &b));
    if (b.offset != a->offset || b.size != a->size || b.data_pos != a->data_pos ||
        b.data_len != a->data_len)
      return TFDC_ERR_CORRUPT;
  }
  return TFDC_OK;
}

/* Values [done, done + n) of the record: codebook entries or assembled
 * planes, into x->vals. */
static int v2_values(v2_ctx *x, const v2_record *r, stream *vs, uint32_t n) {
  uint16_t *sym = x->sym + CHUNK; /* slot 0 is the gap stream's */
  uint32_t i, p;
  if (r->value_mode == TFDC_VALUES_CODEBOOK) {
    TRY(stream_read(&vs[0], sym, n));
    for (i = 0; i < n; i++) x->vals[i] = x->codebook[sym[i]];
    return TFDC_OK;
  }
  for (p = 0; p < r->planes; p++) TRY(stream_read(&vs[p], sym + (size_t)p * CHUNK, n));
  for (i = 0; i < n; i++) {
    uint64_t t = 0;
    for (p = 0; p < r->planes; p++) t = (t << 8) | sym[(size_t)p * CHUNK + i];
    x->vals[i] = inv_transform(t, r->transform, r->eb);
  }
  return TFDC_OK;
}

/* Dense record: value t goes to stream index t (§6.6). */
static int v2_decode_dense(v2_ctx *x, const v2_record *r, stream *vs, uint8_t *o) {
  uint64_t t = 0, row = 0, col = 0, C = r->N / r->R;
  uint16_t *sym = x->sym + CHUNK;
  if (r->eb < 8) memset(o, 0, (size_t)r->out_size);
  while (t < r->N) {
    uint32_t n = (r->N - t) < CHUNK ? (uint32_t)(r->N - t) : CHUNK, i;
    if (r->R == 1 && r->value_mode == TFDC_VALUES_CODEBOOK && (r->eb == 32 || r->eb == 8)) {
      /* The common case, without the intermediate values. */
      const uint64_t *cb = x->codebook;
      TRY(stream_read(&vs[0], sym, n));
      if (r->eb == 32) {
        uint8_t *q = o + 4 * t;
        for (i = 0; i < n; i++) st32(q + 4 * i, cb[sym[i]]);
      } else {
        uint8_t *q = o + t;
        for (i = 0; i < n; i++) q[i] = (uint8_t)cb[sym[i]];
      }
    } else {
      TRY(v2_values(x, r, vs, n));
      if (r->R == 1) {
        for (i = 0; i < n; i++) put_elem(o, t + i, x->vals[i], r->eb);
      } else {
        for (i = 0; i < n; i++) {
          put_elem(o, row * C + col, x->vals[i], r->eb);
          if (++row == r->R) {
            row = 0;
            col++;
          }
        }
      }
    }
    t += n;
  }
  return TFDC_OK;
}

/* Sparse record: gap symbols give stream indices (§6.6). */
static int v2_decode_sparse(v2_ctx *x, const v2_record *r, stream *gs, stream *vs, uint8_t *o) {
  const uint64_t filler = r->G - 1, R = r->R, C = r->N / r->R;
  /* Row-major, whole-byte elements: zero runs are filled chunk by chunk just
   * ahead of the writes; otherwise the range is zeroed first. */
  const int progressive = R == 1 && r->eb >= 8;
  const unsigned es = r->eb / 8;
  uint64_t cur = UINT64_MAX; /* -1 */
  /* Row and column of `cur` in the column-major walk, kept incrementally: a
   * division per element would cost more than the Huffman decoding. Index -1
   * is row R - 1 of column -1 (unsigned wrap). */
  uint64_t row = R - 1, col = UINT64_MAX, used = 0, zeroed = 0;
  uint16_t *g = x->sym, last = 0;
  if (!progressive) memset(o, 0, (size_t)r->out_size);
  while (gs->left > 0) {
    uint32_t n = gs->left < CHUNK ? (uint32_t)gs->left : CHUNK, i, k, nv = 0;
    uint64_t advance = 0; /* n <= 2^12 steps of <= 2^15 each: no overflow */
    TRY(stream_read(gs, g, n));
    for (i = 0; i < n; i++) {
      nv += g[i] != filler;
      advance += g[i] == filler ? filler : (uint64_t)g[i] + 1;
    }
    if (nv > r->nnz - used) return TFDC_ERR_CORRUPT;
    if (progressive) {
      /* This chunk's indices lie in (cur, cur + advance]. */
      if (advance > r->N - zeroed) return TFDC_ERR_CORRUPT; /* past the end */
      memset(o + zeroed * es, 0, (size_t)(advance * es));
      zeroed += advance;
    }
    if (progressive && r->value_mode == TFDC_VALUES_CODEBOOK && (r->eb == 32 || r->eb == 8)) {
      /* The common case: codebook entries stored straight from the symbols.
       * `advance` was checked above, so every index here is below N. */
      const uint64_t *cb = x->codebook;
      const uint16_t *vsym = x->sym + CHUNK;
      if (nv) TRY(stream_read(&vs[0], x->sym + CHUNK, nv));
      if (r->eb == 32) {
        for (i = 0, k = 0; i < n; i++) {
          cur += g[i] == filler ? filler : (uint64_t)g[i] + 1;
          if (g[i] != filler) st32(o + 4 * cur, cb[vsym[k++]]);
        }
      } else {
        for (i = 0, k = 0; i < n; i++) {
          cur += g[i] == filler ? filler : (uint64_t)g[i] + 1;
          if (g[i] != filler) o[cur] = (uint8_t)cb[vsym[k++]];
        }
      }
      used += nv;
      last = g[n - 1];
      continue;
    }
    if (nv) TRY(v2_values(x, r, vs, nv));
    for (i = 0, k = 0; i < n; i++) {
      uint64_t step = g[i] == filler ? filler : (uint64_t)g[i] + 1;
      cur += step;
      /* A filler past the end can only be followed by an index past it. */
      if (cur >= r->N) return TFDC_ERR_CORRUPT;
      if (R > 1) scan_advance(&row, &col, step, R);
      if (g[i] == filler) continue;
      put_elem(o, R > 1 ? row * C + col : cur, x->vals[k++], r->eb);
    }
    used += nv;
    last = g[n - 1];
  }
  if (used != r->nnz) return TFDC_ERR_CORRUPT;
  if (gs->count > 0 && last == filler) return TFDC_ERR_CORRUPT;
  if (progressive) memset(o + zeroed * es, 0, (size_t)((r->N - zeroed) * es));
  return TFDC_OK;
}

static int v2_decode_record(v2_ctx *x, const v2_record *r) {
  stream gs, vs[TFDC_MAX_PLANES];
  unsigned busy = 0, p, nv = r->value_mode == TFDC_VALUES_CODEBOOK ? 1 : r->planes;
  uint8_t *o = x->out + r->out_offset;
  TRY(v2_open_stream(x, &r->gaps, 0, &busy, &gs));
  for (p = 0; p < nv; p++) TRY(v2_open_stream(x, &r->values[p], 1 + p, &busy, &vs[p]));
  if (r->position_mode == TFDC_POSITION_DENSE) return v2_decode_dense(x, r, vs, o);
  if (r->nnz == 0) {
    memset(o, 0, (size_t)r->out_size);
    return TFDC_OK;
  }
  return v2_decode_sparse(x, r, &gs, vs, o);
}

static void v2_free(v2_ctx *x) {
  unsigned k;
  uint64_t i;
  free(x->meta);
  free(x->bufs);
  for (i = 0; x->tables && i < x->num_tables; i++) {
    if (x->tables[i].rm) free(x->tables[i].rm->mem);
    free(x->tables[i].rm);
  }
  free(x->tables);
  for (k = 0; k < MAX_STREAMS; k++) {
    free(x->slots[k].e);
    free(x->lut[k]);
    free(x->ring[k]);
  }
  free(x->lens);
  free(x->sorted);
  free(x->codebook);
  free(x->sym);
  free(x->vals);
}

/* §7 steps 5-8 after the header: inflate, parse, decode into out (D bytes). */
static int v2_decode_body(v2_ctx *x) {
  fb_model inner;
  uint64_t num_records, i, prev_end = 0, fill = x->h.F, targets = 0;
  uint32_t j;
  unsigned k;
  const v2_header *h = &x->h;

  x->meta = (uint8_t *)malloc((size_t)h->M + 1);
  x->lens = (uint8_t *)malloc(TFDC_MAX_ALPHABET);
  x->sorted = (uint16_t *)malloc(sizeof(uint16_t) * TFDC_MAX_ALPHABET);
  x->codebook = (uint64_t *)malloc(sizeof(uint64_t) * TFDC_MAX_CODEBOOK);
  x->sym = (uint16_t *)malloc(sizeof(uint16_t) * CHUNK * MAX_STREAMS);
  x->vals = (uint64_t *)malloc(sizeof(uint64_t) * CHUNK);
  for (k = 0; k < MAX_STREAMS; k++) x->slots[k].built_for = x->lut_for[k] = -1;
  if (!x->meta || !x->lens || !x->sorted || !x->codebook || !x->sym || !x->vals) return TFDC_ERR_NOMEM;
  TRY(v2_inflate(x->in + h->deflate_at, h->C, x->meta, h->M));

  /* The inner flatbuffer (§5): every Model.buffers entry. */
  TRY(fb_open(&inner, x->meta, h->F));
  x->num_buffers = inner.num_buffers;
  x->bufs = (fb_buffer *)malloc(sizeof(fb_buffer) * (inner.num_buffers ? inner.num_buffers : 1));
  if (!x->bufs) return TFDC_ERR_NOMEM;
  for (j = 0; j < inner.num_buffers; j++) TRY(fb_get_buffer(&inner, j, &x->bufs[j]));

  x->mc.d = x->meta;
  x->mc.pos = h->F;
  x->mc.end = h->M;
  TRY(cur_varint_max(&x->mc, (h->M - h->F) / 2, &x->num_tables));
  if (x->num_tables > SIZE_MAX / sizeof(v2_table)) return TFDC_ERR_TOO_LARGE;
  /* zeroed: v2_free reads every entry's model pointer */
  x->tables = (v2_table *)calloc((size_t)(x->num_tables ? x->num_tables : 1), sizeof(v2_table));
  if (!x->tables) return TFDC_ERR_NOMEM;
  for (i = 0; i < x->num_tables; i++) TRY(v2_parse_table(&x->mc, h->flags, &x->tables[i]));
  TRY(cur_varint_max(&x->mc, x->num_buffers, &num_records));
  x->pay_pos = h->payload_at;

  memcpy(x->out, x->meta, (size_t)h->F);
  for (i = 0; i < num_records; i++) {
    v2_record r;
    TRY(v2_parse_record(x, prev_end, &r));
    /* Zero the bytes before this record, just before writing it. */
    memset(x->out + fill, 0, (size_t)(r.out_offset - fill));
    TRY(v2_decode_record(x, &r));
    prev_end = fill = r.out_offset + r.out_size;
  }
  if (h->flags & TFDC_FLAG_PATCHES) {
    /* §6.7: after the records; a patch takes >= 7 meta bytes. Patches
     * overwrite zeros of the copied inner flatbuffer in out[0, F). */
    uint64_t num_patches, patch_end = 0;
    TRY(cur_varint_max(&x->mc, (h->M - h->F) / TFDC_MIN_PATCH_DESCRIPTOR, &num_patches));
    for (i = 0; i < num_patches; i++) {
      v2_record r;
      TRY(v2_parse_patch(x, patch_end, &r));
      TRY(v2_decode_record(x, &r));
      patch_end = r.out_offset + r.out_size;
    }
  }
  if (x->mc.pos != h->M) return TFDC_ERR_CORRUPT;       /* descriptors end at M */
  if (x->pay_pos != h->payload_end) return TFDC_ERR_CORRUPT; /* unused payload */
  if (h->D != (prev_end > h->F ? prev_end : h->F)) return TFDC_ERR_CORRUPT;
  /* Every buffer with offset > 1 is a record's target; records target
   * distinct buffers (their ranges strictly increase), so counting suffices. */
  for (j = 0; j < x->num_buffers; j++) targets += x->bufs[j].offset > 1;
  if (targets != num_records) return TFDC_ERR_CORRUPT;
  if (h->flags & TFDC_FLAG_PATCHES) TRY(v2_check_reread(x));
  return TFDC_OK;
}

static int v2_decode(const uint8_t *in, size_t in_len, const located *L, uint8_t *out,
                     size_t out_cap, uint64_t limit) {
  v2_ctx x;
  int rc;
  memset(&x, 0, sizeof x);
  x.in = in;
  x.in_len = in_len;
  x.out = out;
  TRY(v2_read_header(in, L, limit, 1, &x.h));
  if (x.h.D > (uint64_t)SIZE_MAX || x.h.M >= (uint64_t)SIZE_MAX || x.h.D > UINT64_MAX / 4)
    return TFDC_ERR_TOO_LARGE;
  if (x.h.D > (uint64_t)out_cap) return TFDC_ERR_OUTPUT_SIZE;
  {
    uintptr_t a = (uintptr_t)in, b = (uintptr_t)out;
    if (b < a ? a - b < x.h.D : b - a < in_len) return TFDC_ERR_ARGUMENT; /* overlap */
  }
  rc = v2_decode_body(&x);
  v2_free(&x);
  return rc;
}

/* ======================================================================== */
/* 6. Format 1 (appendix A)                                                  */

typedef struct {
  const located *L;
  const uint8_t *sec; /* = in + S */
  uint64_t D;
  uint32_t num_tables, num_records;
} v1_container;

/* §A.4 step 2: header fields, checksums, table count, the size limit. */
static int v1_read_header(const uint8_t *in, const located *L, uint64_t limit, int verify_crc,
                          v1_container *c) {
  const uint8_t *h = in + L->S;
  /* locate_section checked S + Z == file length and Z >= header + CRC. */
  if (!TFDC_IN_BOUNDS(L->S, TFDC_V1_HEADER_SIZE + TFDC_CRC_SIZE, L->model.f.len)) return TFDC_ERR_TRUNCATED;
  c->L = L;
  c->sec = h;
  if (memcmp(h + TFDC_V1_HEADER_MAGIC, TFDC_MAGIC, 4) != 0) return TFDC_ERR_CORRUPT;
  if (ld16(h + TFDC_V1_HEADER_VERSION_MAJOR) != 1) return TFDC_ERR_VERSION;
  if (ld32(h + TFDC_V1_HEADER_HEADER_SIZE) != TFDC_V1_HEADER_SIZE || ld32(h + TFDC_V1_HEADER_FLAGS) != 0 ||
      ld32(h + TFDC_V1_HEADER_RESERVED) != 0)
    return TFDC_ERR_CORRUPT;
  if (ld64(h + TFDC_V1_HEADER_SECTION_SIZE) != L->Z) return TFDC_ERR_CORRUPT;
  c->D = ld64(h + TFDC_V1_HEADER_DECODED_SIZE);
  if (c->D < L->S + L->Z) return TFDC_ERR_CORRUPT;
  /* Checksums before the tables and records are interpreted (§A.3.1). */
  if (verify_crc &&
      !crc_ok(crc32_bytes(h, L->Z - TFDC_CRC_SIZE), ld32(h + L->Z - TFDC_CRC_SIZE)))
    return TFDC_ERR_CHECKSUM;
  if (verify_crc && !crc_ok(crc32_bytes(in, L->S), ld32(h + TFDC_V1_HEADER_MODEL_CRC)))
    return TFDC_ERR_CHECKSUM;
  c->num_tables = ld32(h + TFDC_V1_HEADER_NUM_TABLES);
  c->num_records = ld32(h + TFDC_V1_HEADER_NUM_RECORDS);
  if (c->num_tables > 65535u) return TFDC_ERR_CORRUPT;
  if (c->D > limit) return TFDC_ERR_TOO_LARGE;
  return TFDC_OK;
}

typedef struct {
  uint8_t kind, max_len;
  uint32_t n;
  uint32_t symbol;        /* kind 1 */
  const uint8_t *lengths; /* kind 0: ceil(n/2) bytes of nibbles */
} v1_table;

/* Parses and validates every table; `pos` advances past them. */
static int v1_parse_tables(const v1_container *c, v1_table *t, uint64_t *pos) {
  uint64_t p = *pos, end = c->L->Z - TFDC_CRC_SIZE;
  uint32_t i;
  for (i = 0; i < c->num_tables; i++) {
    const uint8_t *h;
    if (!TFDC_IN_BOUNDS(p, TFDC_V1_TABLE_HEADER_SIZE, end)) return TFDC_ERR_TRUNCATED;
    h = c->sec + p;
    t[i].kind = h[TFDC_V1_TABLE_KIND];
    t[i].max_len = h[TFDC_V1_TABLE_MAX_LEN];
    t[i].n = ld32(h + TFDC_V1_TABLE_N);
    if (ld16(h + TFDC_V1_TABLE_RESERVED) != 0 || t[i].n < 1 || t[i].n > TFDC_MAX_ALPHABET)
      return TFDC_ERR_CORRUPT;
    p += TFDC_V1_TABLE_HEADER_SIZE;
    if (t[i].kind == TFDC_TABLE_SINGLE) {
      if (t[i].max_len != 0) return TFDC_ERR_CORRUPT;
      if (!TFDC_IN_BOUNDS(p, TFDC_V1_TABLE_SYMBOL_SIZE, end)) return TFDC_ERR_TRUNCATED;
      t[i].symbol = ld32(c->sec + p);
      if (t[i].symbol >= t[i].n) return TFDC_ERR_CORRUPT;
      p += TFDC_V1_TABLE_SYMBOL_SIZE;
    } else if (t[i].kind == TFDC_TABLE_HUFFMAN) {
      uint32_t nb = (t[i].n + 1) / 2, j, kraft = 0, maxl = 0;
      const uint8_t *L;
      if (!TFDC_IN_BOUNDS(p, nb, end)) return TFDC_ERR_TRUNCATED;
      L = c->sec + p;
      t[i].lengths = L;
      if ((t[i].n & 1) && (L[nb - 1] >> 4) != 0) return TFDC_ERR_CORRUPT;
      for (j = 0; j < nb; j++) {
        unsigned lo = L[j] & 15, hi = L[j] >> 4;
        /* Each term is at most 2^14; the running sum fits easily. */
        if (lo) kraft += 1u << (15 - lo);
        if (hi) kraft += 1u << (15 - hi);
        if (lo > maxl) maxl = lo;
        if (hi > maxl) maxl = hi;
        if (kraft > (1u << 15)) return TFDC_ERR_CORRUPT;
      }
      if (maxl == 0 || maxl != t[i].max_len) return TFDC_ERR_CORRUPT;
      p += nb;
    } else {
      return TFDC_ERR_CORRUPT;
    }
  }
  *pos = p;
  return TFDC_OK;
}

typedef struct {
  uint64_t count;
  int table; /* -1 for count == 0 */
  uint32_t block;
  uint64_t nseg;
  const uint8_t *seg_lens;
  const uint8_t *data;
  uint64_t data_bytes;
} v1_stream;

/* Parses a stream header (§A.3.3) at rec[*pos] within a record of `len`
 * bytes (the record CRC excluded). Checks every structural rule. */
static int v1_parse_stream(const uint8_t *rec, uint64_t len, uint64_t *pos, const v1_table *tables,
                           uint32_t num_tables, uint32_t alphabet_limit, v1_stream *si) {
  const uint8_t *h;
  uint32_t table, i;
  uint64_t p = *pos, total = 0;
  if (!TFDC_IN_BOUNDS(p, TFDC_V1_STREAM_HEADER_SIZE, len)) return TFDC_ERR_TRUNCATED;
  h = rec + p;
  si->count = ld64(h + TFDC_V1_STREAM_COUNT);
  table = ld16(h + TFDC_V1_STREAM_TABLE);
  si->block = ld32(h + TFDC_V1_STREAM_BLOCK);
  if (ld16(h + TFDC_V1_STREAM_RESERVED) != 0) return TFDC_ERR_CORRUPT;
  p += TFDC_V1_STREAM_HEADER_SIZE;
  si->nseg = 0;
  si->seg_lens = rec + p;
  si->data_bytes = 0;
  if (si->count == 0) {
    if (table != TFDC_V1_NO_TABLE || si->block != 0) return TFDC_ERR_CORRUPT;
    si->table = -1;
  } else {
    if (table >= num_tables) return TFDC_ERR_CORRUPT;
    if (tables[table].n > alphabet_limit) return TFDC_ERR_CORRUPT;
    si->table = (int)table;
    if (tables[table].kind == TFDC_TABLE_SINGLE) {
      if (si->block != 0) return TFDC_ERR_CORRUPT;
    } else {
      if (si->block == 0) return TFDC_ERR_CORRUPT;
      si->nseg = si->count / si->block + (si->count % si->block != 0);
      if (si->nseg > len / 4 || !TFDC_IN_BOUNDS(p, 4 * si->nseg, len)) return TFDC_ERR_TRUNCATED;
      for (i = 0; i < si->nseg; i++) total += ld32(rec + p + 4 * i); /* < 2^64: nseg < 2^62 */
      p += 4 * si->nseg;
      if (!TFDC_IN_BOUNDS(p, total, len)) return TFDC_ERR_TRUNCATED;
      si->data_bytes = total;
    }
  }
  si->data = rec + p;
  *pos = p + si->data_bytes;
  return TFDC_OK;
}

typedef struct {
  v1_table *tables;
  htab vals, gaps;
  uint8_t *lens;    /* TFDC_MAX_ALPHABET */
  uint16_t *sorted; /* TFDC_MAX_ALPHABET scratch for table building */
  uint8_t *codebook; /* TFDC_MAX_ALPHABET * 8 bytes */
  uint16_t *sym_a, *sym_b; /* CHUNK each */
} v1_workspace;

static void v1_get_htab(v1_workspace *w, htab *h, const v1_table *tables, int table) {
  const v1_table *t;
  uint32_t s;
  if (table < 0 || tables[table].kind != TFDC_TABLE_HUFFMAN || h->built_for == table) return;
  t = &tables[table];
  for (s = 0; s < t->n; s++) w->lens[s] = (t->lengths[s >> 1] >> ((s & 1) * 4)) & 15;
  build_htab(h, w->lens, t->n, t->max_len, w->sorted);
  h->built_for = table;
}

static void v1_stream_open(stream *s, const v1_stream *si, const v1_table *tables, const htab *h,
                           const uint8_t *in_end) {
  memset(s, 0, sizeof *s);
  s->count = s->left = si->count;
  s->block = si->block;
  s->in_end = in_end;
  if (si->count == 0) return;
  if (tables[si->table].kind == TFDC_TABLE_SINGLE) {
    s->constant = 1;
    s->symbol1 = (uint16_t)tables[si->table].symbol;
    return;
  }
  s->h = h;
  s->seg_lens = si->seg_lens;
  s->nseg = si->nseg;
  s->next_seg = si->data;
}

/* Writes one element (value bytes `v`) at element index `i`. */
static void v1_put(uint8_t *out, uint64_t i, const uint8_t *v, unsigned es) {
  switch (es) {
    case 1: out[i] = v[0]; break;
    case 2: memcpy(out + 2 * i, v, 2); break;
    case 4: memcpy(out + 4 * i, v, 4); break;
    default: memcpy(out + 8 * i, v, 8); break;
  }
}

/* Dense record: every stream index gets the next value. */
static int v1_decode_dense(v1_workspace *w, stream *vs, const uint8_t *raw, int value_mode,
                           uint8_t *out, uint64_t N, unsigned es, int scan, uint64_t R) {
  const uint8_t *cb = w->codebook;
  uint64_t t = 0, row = 0, col = 0, C = N / R;
  while (t < N) {
    uint32_t n = (N - t) < CHUNK ? (uint32_t)(N - t) : CHUNK, i;
    const uint16_t *sym = w->sym_a;
    if (value_mode == 0) TRY(stream_read(vs, w->sym_a, n));
    if (scan == 0) {
      if (value_mode == 1) {
        memcpy(out + t * es, raw + t * es, (size_t)n * es);
      } else if (es == 4) {
        uint8_t *o = out + 4 * t;
        for (i = 0; i < n; i++) memcpy(o + 4 * i, cb + 4 * (uint32_t)sym[i], 4);
      } else if (es == 1) {
        uint8_t *o = out + t;
        for (i = 0; i < n; i++) o[i] = cb[sym[i]];
      } else {
        for (i = 0; i < n; i++) v1_put(out, t + i, cb + (size_t)es * sym[i], es);
      }
    } else {
      for (i = 0; i < n; i++) {
        const uint8_t *v = value_mode ? raw + (t + i) * es : cb + (size_t)es * sym[i];
        v1_put(out, row * C + col, v, es);
        if (++row == R) {
          row = 0;
          col++;
        }
      }
    }
    t += n;
  }
  return TFDC_OK;
}

/* Sparse record: gap symbols give stream indices (§A.3.4 "Positions"). */
static int v1_decode_sparse(v1_workspace *w, stream *vs, stream *gs, const uint8_t *raw,
                            int value_mode, uint8_t *out, uint64_t N, unsigned es, int scan,
                            uint64_t R, uint64_t nnz, uint32_t G) {
  const uint8_t *cb = w->codebook;
  const uint32_t filler = G - 1;
  uint64_t cur = UINT64_MAX; /* -1 */
  uint64_t row = R - 1, col = UINT64_MAX; /* see v2_decode_sparse */
  uint64_t values_used = 0, C = N / R;
  uint64_t zeroed = 0; /* scan 0: elements [0, zeroed) are zeroed, == cur + 1 */
  uint16_t last = 0;
  while (gs->left > 0) {
    uint32_t n = gs->left < CHUNK ? (uint32_t)gs->left : CHUNK, i, k, nv = 0;
    uint64_t advance = 0; /* n <= 2^12 steps of < 2^16 each: no overflow */
    TRY(stream_read(gs, w->sym_b, n));
    for (i = 0; i < n; i++) {
      nv += w->sym_b[i] != filler;
      advance += w->sym_b[i] == filler ? filler : (uint64_t)w->sym_b[i] + 1;
    }
    if (nv > nnz - values_used) return TFDC_ERR_CORRUPT;
    if (!scan) {
      if (advance > N - zeroed) return TFDC_ERR_CORRUPT; /* past the end */
      memset(out + zeroed * es, 0, (size_t)(advance * es));
      zeroed += advance;
    }
    if (value_mode == 0 && nv) TRY(stream_read(vs, w->sym_a, nv));
    for (i = 0, k = 0; i < n; i++) {
      uint32_t g = w->sym_b[i];
      const uint8_t *v;
      uint64_t step = g == filler ? filler : (uint64_t)g + 1;
      cur += step;
      if (cur >= N) return TFDC_ERR_CORRUPT;
      if (scan) scan_advance(&row, &col, step, R);
      if (g == filler) continue;
      v = value_mode ? raw + (values_used + k) * es : cb + (size_t)es * w->sym_a[k];
      k++;
      v1_put(out, scan ? row * C + col : cur, v, es);
    }
    values_used += nv;
    last = w->sym_b[n - 1];
  }
  if (values_used != nnz) return TFDC_ERR_CORRUPT;
  if (gs->count > 0 && last == filler) return TFDC_ERR_CORRUPT;
  if (!scan) memset(out + zeroed * es, 0, (size_t)((N - zeroed) * es));
  return TFDC_OK;
}

/* Parses, checks and decodes the record at section offset `pos`. */
static int v1_decode_record(const v1_container *c, v1_workspace *w, uint64_t *pos, uint64_t *prev_end,
                            uint8_t *out, const uint8_t *in_end) {
  const located *L = c->L;
  const uint8_t *rec = c->sec + *pos;
  uint64_t end = L->Z - TFDC_CRC_SIZE, rsize, body, p, out_offset, out_size, N, nnz, cb_bytes;
  uint32_t buffer_index, scan_rows, K, G, entry;
  unsigned es, value_mode, position_mode, scan, cb_enc;
  fb_buffer fbb;
  v1_stream vsi, gsi;
  stream vs, gs;
  const uint8_t *raw = NULL;
  int rc;

  if (!TFDC_IN_BOUNDS(*pos, TFDC_V1_RECORD_HEADER_SIZE + TFDC_CRC_SIZE, end)) return TFDC_ERR_TRUNCATED;
  rsize = ld32(rec + TFDC_V1_RECORD_SIZE);
  if (rsize < TFDC_V1_RECORD_HEADER_SIZE + TFDC_CRC_SIZE) return TFDC_ERR_CORRUPT;
  if (!TFDC_IN_BOUNDS(*pos, rsize, end)) return TFDC_ERR_TRUNCATED;
  body = rsize - TFDC_CRC_SIZE;
  if (!crc_ok(crc32_bytes(rec, body), ld32(rec + body))) return TFDC_ERR_CHECKSUM;

  buffer_index = ld32(rec + TFDC_V1_RECORD_BUFFER_INDEX);
  out_offset = ld64(rec + TFDC_V1_RECORD_OUT_OFFSET);
  out_size = ld64(rec + TFDC_V1_RECORD_OUT_SIZE);
  es = rec[TFDC_V1_RECORD_ELEM_SIZE];
  value_mode = rec[TFDC_V1_RECORD_VALUE_MODE];
  position_mode = rec[TFDC_V1_RECORD_POSITION_MODE];
  scan = rec[TFDC_V1_RECORD_SCAN];
  scan_rows = ld32(rec + TFDC_V1_RECORD_SCAN_ROWS);
  nnz = ld64(rec + TFDC_V1_RECORD_NNZ);
  K = ld32(rec + TFDC_V1_RECORD_CODEBOOK_SIZE);
  cb_enc = rec[TFDC_V1_RECORD_CODEBOOK_ENCODING];
  G = ld32(rec + TFDC_V1_RECORD_GAP_ALPHABET);

  if (out_size == 0 || (es != 1 && es != 2 && es != 4 && es != 8) || out_size % es) return TFDC_ERR_CORRUPT;
  N = out_size / es;
  if (value_mode > 1 || position_mode > 1 || scan > 1) return TFDC_ERR_CORRUPT;
  if (scan_rows == 0 || N % scan_rows != 0 || (scan == 0 && scan_rows != 1)) return TFDC_ERR_CORRUPT;
  if (position_mode == 0 ? nnz != N : nnz > N) return TFDC_ERR_CORRUPT;
  if (value_mode == 0 ? (K > TFDC_MAX_ALPHABET || (nnz > 0 && K == 0)) : K != 0) return TFDC_ERR_CORRUPT;
  if (cb_enc > 1 || (cb_enc == 1 && es != 4)) return TFDC_ERR_CORRUPT;
  if (rec[TFDC_V1_RECORD_RESERVED] || rec[TFDC_V1_RECORD_RESERVED + 1] || rec[TFDC_V1_RECORD_RESERVED + 2])
    return TFDC_ERR_CORRUPT;
  if (position_mode == 1 ? (G < 2 || G > TFDC_MAX_ALPHABET) : G != 0) return TFDC_ERR_CORRUPT;

  /* Output range and agreement with the flatbuffer. */
  if (out_offset % 16 != 0 || out_offset < L->S + L->Z || out_offset < *prev_end) return TFDC_ERR_CORRUPT;
  if (out_offset > c->D || out_size > c->D - out_offset) return TFDC_ERR_CORRUPT;
  if ((rc = fb_get_buffer(&L->model, buffer_index, &fbb))) return rc;
  if (buffer_index == L->section_buffer) return TFDC_ERR_CORRUPT;
  if (fbb.offset != out_offset || fbb.size != out_size || fbb.has_data) return TFDC_ERR_CORRUPT;

  /* Codebook. */
  p = TFDC_V1_RECORD_HEADER_SIZE;
  cb_bytes = (uint64_t)K * (cb_enc ? 2 : es);
  if (!TFDC_IN_BOUNDS(p, cb_bytes, body)) return TFDC_ERR_TRUNCATED;
  if (cb_enc == 1) {
    for (entry = 0; entry < K; entry++) st32(w->codebook + 4 * entry, half_to_single(ld16(rec + p + 2 * entry)));
  } else if (K) {
    memcpy(w->codebook, rec + p, (size_t)cb_bytes);
  }
  p += cb_bytes;

  /* Values. */
  memset(&vsi, 0, sizeof vsi);
  vsi.table = -1;
  if (value_mode == 0) {
    TRY(v1_parse_stream(rec, body, &p, w->tables, c->num_tables, K, &vsi));
    if (vsi.count != nnz) return TFDC_ERR_CORRUPT;
  } else {
    if (!TFDC_IN_BOUNDS(p, nnz * es, body)) return TFDC_ERR_TRUNCATED; /* nnz <= N: no overflow */
    raw = rec + p;
    p += nnz * es;
  }
  /* Gaps. */
  memset(&gsi, 0, sizeof gsi);
  gsi.table = -1;
  if (position_mode == 1) {
    TRY(v1_parse_stream(rec, body, &p, w->tables, c->num_tables, G, &gsi));
    if (nnz == 0 ? gsi.count != 0 : gsi.count > N || gsi.count < nnz) return TFDC_ERR_CORRUPT;
  }
  if (p != body) return TFDC_ERR_CORRUPT;

  /* Decode. Zero bytes between the previous record and this one; dense
   * records write every element, sparse row-major ones zero as they go,
   * column-major sparse ones jump around and are zero-filled first. */
  memset(out + *prev_end, 0, (size_t)(out_offset - *prev_end));
  if (position_mode == 1 && scan == 1) memset(out + out_offset, 0, (size_t)out_size);
  v1_get_htab(w, &w->vals, w->tables, vsi.table);
  v1_get_htab(w, &w->gaps, w->tables, gsi.table);
  v1_stream_open(&vs, &vsi, w->tables, &w->vals, in_end);
  v1_stream_open(&gs, &gsi, w->tables, &w->gaps, in_end);
  if (position_mode == 0) {
    rc = v1_decode_dense(w, &vs, raw, (int)value_mode, out + out_offset, N, es, (int)scan, scan_rows);
  } else {
    rc = v1_decode_sparse(w, &vs, &gs, raw, (int)value_mode, out + out_offset, N, es, (int)scan,
                          scan_rows, nnz, G);
  }
  if (rc) return rc;
  if (value_mode == 0 && vs.left != 0) return TFDC_ERR_CORRUPT;

  *prev_end = out_offset + out_size;
  *pos += rsize;
  return TFDC_OK;
}

static void v1_workspace_free(v1_workspace *w) {
  free(w->tables);
  free(w->vals.e);
  free(w->gaps.e);
  free(w->lens);
  free(w->sorted);
  free(w->codebook);
  free(w->sym_a);
  free(w->sym_b);
}

static int v1_decode(const uint8_t *in, size_t in_len, const located *L, uint8_t *out,
                     size_t out_cap, uint64_t limit) {
  v1_container c;
  v1_workspace w;
  uint64_t pos = TFDC_V1_HEADER_SIZE, prev_end = 0, targets = 0;
  uint32_t r, b;
  int rc;

  TRY(v1_read_header(in, L, limit, 1, &c));
  if (c.D > (uint64_t)SIZE_MAX) return TFDC_ERR_TOO_LARGE;
  if (c.D > (uint64_t)out_cap) return TFDC_ERR_OUTPUT_SIZE;
  {
    uintptr_t a = (uintptr_t)in, o = (uintptr_t)out;
    if (o < a ? a - o < c.D : o - a < in_len) return TFDC_ERR_ARGUMENT; /* overlap */
  }

  memset(&w, 0, sizeof w);
  w.tables = (v1_table *)malloc(sizeof(v1_table) * (c.num_tables ? c.num_tables : 1));
  w.vals.e = (uint32_t *)malloc(sizeof(uint32_t) * HTAB_ENTRIES);
  w.gaps.e = (uint32_t *)malloc(sizeof(uint32_t) * HTAB_ENTRIES);
  w.lens = (uint8_t *)malloc(TFDC_MAX_ALPHABET);
  w.sorted = (uint16_t *)malloc(sizeof(uint16_t) * TFDC_MAX_ALPHABET);
  w.codebook = (uint8_t *)malloc(8u * TFDC_MAX_ALPHABET);
  w.sym_a = (uint16_t *)malloc(sizeof(uint16_t) * CHUNK);
  w.sym_b = (uint16_t *)malloc(sizeof(uint16_t) * CHUNK);
  w.vals.built_for = w.gaps.built_for = -1;
  if (!w.tables || !w.vals.e || !w.gaps.e || !w.lens || !w.sorted || !w.codebook || !w.sym_a || !w.sym_b) {
    v1_workspace_free(&w);
    return TFDC_ERR_NOMEM;
  }

  rc = v1_parse_tables(&c, w.tables, &pos);
  /* Every record takes at least its fixed header and CRC. */
  if (rc == TFDC_OK &&
      c.num_records > (L->Z - TFDC_V1_HEADER_SIZE) / (TFDC_V1_RECORD_HEADER_SIZE + TFDC_CRC_SIZE))
    rc = TFDC_ERR_CORRUPT;
  if (rc == TFDC_OK) {
    memcpy(out, in, in_len);
    /* The tail is zero-filled piece by piece, just before each record is
     * decoded into it, so that each output byte is written while its cache
     * line is hot rather than in a separate pass over the whole model. */
    prev_end = in_len;
    for (r = 0; r < c.num_records && rc == TFDC_OK; r++)
      rc = v1_decode_record(&c, &w, &pos, &prev_end, out, in + in_len);
    if (rc == TFDC_OK && pos != L->Z - TFDC_CRC_SIZE) rc = TFDC_ERR_CORRUPT;
    if (rc == TFDC_OK) memset(out + prev_end, 0, (size_t)(c.D - prev_end)); /* after the last record */
  }
  /* Every Buffer that points past the file (offset > 1) other than the
   * section must be a record's target; targets are distinct because record
   * offsets strictly increase, so counting suffices. */
  for (b = 0; b < L->model.num_buffers && rc == TFDC_OK; b++) {
    fb_buffer fbb;
    rc = fb_get_buffer(&L->model, b, &fbb);
    if (rc == TFDC_OK && b != L->section_buffer && fbb.offset > 1) targets++;
  }
  if (rc == TFDC_OK && targets != c.num_records) rc = TFDC_ERR_CORRUPT;
  v1_workspace_free(&w);
  return rc;
}

/* ======================================================================== */
/* 7. Public API                                                             */

const char *tfdc_version(void) { return TFDC_VERSION; }

const char *tfdc_strerror(int status) {
  switch (status) {
    case TFDC_OK: return "ok";
    case TFDC_ERR_ARGUMENT: return "invalid argument";
    case TFDC_ERR_NOT_PACKED: return "not a tfdc-packed model (no tfdc.v2 or tfdc.v1 metadata entry)";
    case TFDC_ERR_FLATBUFFER: return "malformed or truncated flatbuffer";
    case TFDC_ERR_TRUNCATED: return "truncated tfdc section: a structure runs past its end";
    case TFDC_ERR_VERSION: return "unsupported tfdc format major version";
    case TFDC_ERR_CHECKSUM: return "CRC-32 mismatch: the file is corrupted";
    case TFDC_ERR_CORRUPT: return "corrupt tfdc section: a field breaks a rule of the format";
    case TFDC_ERR_OUTPUT_SIZE: return "output buffer smaller than the decoded size";
    case TFDC_ERR_NOMEM: return "out of memory";
    case TFDC_ERR_TOO_LARGE: return "decoded size or meta stream size exceeds the limit";
    default: return "unknown tfdc status";
  }
}

uint64_t tfdc_default_limit(size_t in_len) {
  uint64_t len = (uint64_t)in_len;
  uint64_t scaled = len > UINT64_MAX / TFDC_DEFAULT_LIMIT_RATIO ? UINT64_MAX : len * TFDC_DEFAULT_LIMIT_RATIO;
  return scaled > TFDC_DEFAULT_LIMIT_FLOOR ? scaled : TFDC_DEFAULT_LIMIT_FLOOR;
}

int tfdc_is_packed(const uint8_t *in, size_t in_len) {
  located L;
  if (!in) return 0;
  return locate_section(in, in_len, &L) == TFDC_OK;
}

static int size_impl(const uint8_t *in, size_t in_len, uint64_t limit, int verify_crc,
                     uint64_t *out_size) {
  located L;
  if (!in || !out_size) return TFDC_ERR_ARGUMENT;
  TRY(locate_section(in, in_len, &L));
  if (L.major == 1) {
    v1_container c;
    TRY(v1_read_header(in, &L, limit, verify_crc, &c));
    /* A size this machine cannot allocate is TOO_LARGE here already, as in
     * tfdc_decode: on a 32-bit target a caller's malloc would truncate it. */
    if (c.D > (uint64_t)SIZE_MAX) return TFDC_ERR_TOO_LARGE;
    *out_size = c.D;
  } else {
    v2_header h;
    TRY(v2_read_header(in, &L, limit, verify_crc, &h));
    if (h.D > (uint64_t)SIZE_MAX || h.M >= (uint64_t)SIZE_MAX) return TFDC_ERR_TOO_LARGE;
    *out_size = h.D;
  }
  return TFDC_OK;
}

int tfdc_decoded_size(const uint8_t *in, size_t in_len, uint64_t *out_size) {
  return size_impl(in, in_len, tfdc_default_limit(in_len), 1, out_size);
}

int tfdc_decoded_size_limit(const uint8_t *in, size_t in_len, uint64_t limit, uint64_t *out_size) {
  return size_impl(in, in_len, limit, 1, out_size);
}

int tfdc_peek_decoded_size(const uint8_t *in, size_t in_len, uint64_t *out_size) {
  return size_impl(in, in_len, tfdc_default_limit(in_len), 0, out_size);
}

int tfdc_decode_limit(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, uint64_t limit) {
  located L;
  if (!in || !out) return TFDC_ERR_ARGUMENT;
  TRY(locate_section(in, in_len, &L));
  if (L.major == 1) return v1_decode(in, in_len, &L, out, out_cap, limit);
  return v2_decode(in, in_len, &L, out, out_cap, limit);
}

int tfdc_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap) {
  /* The caller allocated out_cap bytes: a decoded size up to that is wanted. */
  uint64_t limit = tfdc_default_limit(in_len);
  return tfdc_decode_limit(in, in_len, out, out_cap, (uint64_t)out_cap > limit ? (uint64_t)out_cap : limit);
}
