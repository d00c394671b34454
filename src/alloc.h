/*
 * alloc.h - every allocation of liboverlap goes through these, which are mimalloc's API where the build has
 * mimalloc (Linux: always) and the C runtime's allocator otherwise (the Windows cross build: Debian ships no
 * mimalloc for mingw-w64; see docs/BUILD.md).
 */
#ifndef OVL_ALLOC_H
#define OVL_ALLOC_H

#include <stddef.h>

#ifdef OVL_HAVE_MIMALLOC
#include <mimalloc.h>
#define ovl__malloc(size) mi_malloc(size)
#define ovl__zalloc(size) mi_zalloc(size)
#define ovl__calloc(count, size) mi_calloc(count, size)
#define ovl__realloc(pointer, size) mi_realloc(pointer, size)
#define ovl__free(pointer) mi_free(pointer)
#define ovl__malloc_aligned(size, alignment) mi_malloc_aligned(size, alignment)
#define ovl__free_aligned(pointer) mi_free(pointer)
#else
#include <stdlib.h>
#define ovl__malloc(size) malloc(size)
#define ovl__zalloc(size) calloc(1, size)
#define ovl__calloc(count, size) calloc(count, size)
#define ovl__realloc(pointer, size) realloc(pointer, size)
#define ovl__free(pointer) free(pointer)
#ifdef _WIN32
#include <malloc.h>
#define ovl__malloc_aligned(size, alignment) _aligned_malloc(size, alignment)
#define ovl__free_aligned(pointer) _aligned_free(pointer)
#else
#define ovl__malloc_aligned(size, alignment) aligned_alloc(alignment, ((size) + (alignment) - 1) / (alignment) * (alignment))
#define ovl__free_aligned(pointer) free(pointer)
#endif
#endif

#endif
