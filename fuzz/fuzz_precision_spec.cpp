// The spec parsers of tensor/: precision stacks, quantizer values, quantizer names and format
// names, each with its round trip: what parses prints canonically, and the canonical text
// parses back to the same value and prints identically.
#include <string>

#include "core/format.h"
#include "fuzz_support.h"
#include "tensor/precision_stack.h"
#include "tensor/quantizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lattice;
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_error_or_success([&] {
    const PrecisionStack stack = parse_precision_stack(text);
    const std::string printed = to_string(stack);
    const PrecisionStack again = parse_precision_stack(printed);
    FUZZ_CHECK(to_string(again) == printed, "stack \"", text, "\" prints \"", printed,
               "\", which prints back as \"", to_string(again), "\"");
    FUZZ_CHECK(again == stack, "stack \"", text, "\" prints \"", printed,
               "\", which parses to a different stack");
  });
  fuzz::expect_error_or_success([&] {
    const Quantizer quantizer = parse_quantizer_spec(text);
    const std::string printed = to_string(quantizer);
    const Quantizer again = parse_quantizer_spec(printed);
    FUZZ_CHECK(to_string(again) == printed && again == quantizer, "quantizer \"", text,
               "\" prints \"", printed, "\", which prints back as \"", to_string(again), "\"");
  });
  fuzz::expect_error_or_success([&] {
    const Quantizer quantizer = parse_quantizer(text);
    validate(quantizer);
  });
  fuzz::expect_error_or_success([&] {
    const Format format = parse_format(text);
    const std::string printed = format_name(format);
    FUZZ_CHECK(format_name(parse_format(printed)) == printed && parse_format(printed) == format,
               "format \"", text, "\" prints \"", printed, "\"");
  });
  return 0;
}
