# Optional: the install script (scripts/build-native.mjs) compiles the sources
# directly with the C compiler. This file lets node-gyp build the same addon:
#   npx node-gyp rebuild -C native   (output: native/build/Release/stasis_native.node)
{
  "targets": [
    {
      "target_name": "stasis_native",
      "sources": ["addon.c", "utimens.c", "io.c", "beneath.c", "mapped.c", "process.c", "dirty.c", "inline.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O2", "-Wall"] }
    }
  ]
}
