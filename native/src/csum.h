/* Internet (one's-complement) checksum, RFC 1071. Sums are kept in a 64-bit
 * accumulator over native-order loads; folding and storing the result with a
 * native store yields network byte order on any endianness (RFC 1071 §2(B)). */
#ifndef WEFT_CSUM_H
#define WEFT_CSUM_H
#include <stddef.h>
#include <stdint.h>

/* Adds `len` bytes at `p` to `acc`. `p` must start at an even offset of the
 * checksummed region; an odd tail is padded with a zero byte. */
uint64_t csum_add(uint64_t acc, const void *p, size_t len);

/* Folds an accumulator to 16 bits (not complemented). */
uint16_t csum_fold(uint64_t acc);

/* Adds a 16-bit value given in host order, as it would appear in a header. */
uint64_t csum_add_be16(uint64_t acc, uint16_t host_value);

/* Pseudo-header sum for TCP/UDP/ICMPv6 over IPv4 (alen 4) or IPv6 (alen 16). */
uint64_t csum_pseudo(const uint8_t *src, const uint8_t *dst, size_t alen,
                     uint8_t proto, uint32_t l4len);

/* Stores ~fold(acc) at `field` (2 bytes, any alignment). */
void csum_store(uint8_t *field, uint64_t acc);

/* Byte-at-a-time reference implementation, for tests. */
uint16_t csum_reference(const uint8_t *p, size_t len);
#endif
