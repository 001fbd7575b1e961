/*
 * stb_image_impl.h - the system stb_image (libstb-dev), PNG only, compiled
 * into the including test (once per test program) with the warnings its
 * code trips under the project's flags turned off. The tests read back the
 * PNGs that viz writes with it.
 */
#ifndef BR_STB_IMAGE_IMPL_H
#define BR_STB_IMAGE_IMPL_H

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

#endif
