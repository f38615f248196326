#include "engine/tflm_platform.h"

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace {
char g_log[128];
}

namespace tf {
namespace engine {
const char* tflm_last_log() { return g_log; }
void tflm_clear_log() { g_log[0] = '\0'; }
}  // namespace engine
}  // namespace tf

// TFLM's debug-log hooks (tensorflow/lite/micro/debug_log.h), replacing its stdio version.
extern "C" void DebugLog(const char* format, va_list args) {
  char line[sizeof(g_log)];
  const int n = std::vsnprintf(line, sizeof(line), format, args);
  if (n <= 0) return;
  // Keep the last line with text: MicroPrintf sends its line ending as a separate call.
  size_t end = std::strlen(line);
  while (end > 0 && (line[end - 1] == '\n' || line[end - 1] == '\r' || line[end - 1] == ' ')) --end;
  if (end == 0) return;
  line[end] = '\0';
  std::snprintf(g_log, sizeof(g_log), "%s", line);
}

extern "C" int DebugVsnprintf(char* buffer, size_t buf_size, const char* format, va_list vlist) {
  return std::vsnprintf(buffer, buf_size, format, vlist);
}
