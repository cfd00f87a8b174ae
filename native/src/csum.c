#include "csum.h"
#include <string.h>
#include <arpa/inet.h>

static inline uint64_t load64(const uint8_t *p) {
  uint64_t w;
  memcpy(&w, p, 8); /* one unaligned load on every target that has one */
  return w;
}

static inline uint64_t add_carry(uint64_t a, uint64_t b) {
  uint64_t s = a + b;
  return s + (s < a); /* end-around carry; compilers emit add/adc */
}

uint64_t csum_add(uint64_t acc, const void *buf, size_t len) {
  const uint8_t *p = buf;
  /* Four independent accumulators let the CPU overlap the carry chains. */
  uint64_t s0 = acc, s1 = 0, s2 = 0, s3 = 0;
  while (len >= 64) {
    s0 = add_carry(s0, load64(p));
    s1 = add_carry(s1, load64(p + 8));
    s2 = add_carry(s2, load64(p + 16));
    s3 = add_carry(s3, load64(p + 24));
    s0 = add_carry(s0, load64(p + 32));
    s1 = add_carry(s1, load64(p + 40));
    s2 = add_carry(s2, load64(p + 48));
    s3 = add_carry(s3, load64(p + 56));
    p += 64;
    len -= 64;
  }
  while (len >= 8) {
    s0 = add_carry(s0, load64(p));
    p += 8;
    len -= 8;
  }
  if (len) {
    uint8_t tail[8] = {0};
    memcpy(tail, p, len);
    uint64_t w;
    memcpy(&w, tail, 8);
    s0 = add_carry(s0, w);
  }
  s0 = add_carry(s0, s1);
  s2 = add_carry(s2, s3);
  return add_carry(s0, s2);
}

uint16_t csum_fold(uint64_t acc) {
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffu) + (acc >> 16);
  acc = (acc & 0xffffu) + (acc >> 16);
  return (uint16_t)acc;
}

uint64_t csum_add_be16(uint64_t acc, uint16_t host_value) {
  /* The value as it sits in memory, read back natively. */
  return add_carry(acc, (uint64_t)htons(host_value));
}

uint64_t csum_pseudo(const uint8_t *src, const uint8_t *dst, size_t alen,
                     uint8_t proto, uint32_t l4len) {
  uint64_t acc = csum_add(0, src, alen);
  acc = csum_add(acc, dst, alen);
  if (l4len > 0xffff) acc = csum_add_be16(acc, (uint16_t)(l4len >> 16));
  acc = csum_add_be16(acc, (uint16_t)l4len);
  return csum_add_be16(acc, proto);
}

void csum_store(uint8_t *field, uint64_t acc) {
  uint16_t v = (uint16_t)~csum_fold(acc);
  memcpy(field, &v, 2);
}

uint16_t csum_reference(const uint8_t *p, size_t len) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < len; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (len & 1) s += (uint32_t)p[len - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}
