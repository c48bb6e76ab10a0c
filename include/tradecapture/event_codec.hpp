#pragma once
/// \file event_codec.hpp
/// The JSON text formats of spec sections 1 and 4: event lines in, outcome/position/event lines out.

#include <tradecapture/types.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tradecapture {

/// The result of parsing one event line.
struct ParsedEvent {
  std::optional<TradeEvent> event;  ///< set when the line is a valid event
  std::string reason;               ///< "invalid: ..." when it is not
  /// `trade_id` of the input when the line is JSON and it is a JSON string, else null.
  std::optional<std::string> echo_trade_id;
  /// `version` of the input when it is a JSON integer in the signed 64-bit range, else null.
  std::optional<std::int64_t> echo_version;
};

/// True when `line` holds only spaces, tabs and carriage returns (it gets no outcome).
bool is_blank_line(std::string_view line) noexcept;

/// The UTF-8 byte-order mark, skipped at the very start of an input.
inline constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

/// Parses one line (without its '\n') as strict JSON and validates it per spec section 1.
/// Never throws on bad input. Exactly `decode_event` followed by `validate` of its event.
ParsedEvent parse_event(std::string_view line);

/// Parses one line like `parse_event` but checks only its form: strict JSON, an object, every
/// required field present with the right JSON type, `type` and `side` spelled right, `version`
/// an integer in the signed 64-bit range, `quantity`/`price` plain decimals with their digits.
/// The rules `validate` checks (identifier lengths and characters, the version rules, amount
/// ranges) are left to the caller: `event` may be set for an event `validate` refuses.
///
/// For a host that submits each event to a `Pipeline`, which validates every submission itself
/// (REJECTED with `validate`'s reason, before admission; only a pipeline already stopping
/// answers `errc::stopped` first): the event is validated once, and its outcome, reason and
/// echoes are those of `parse_event`. Never throws on bad input.
ParsedEvent decode_event(std::string_view line);

/// Appends `s` as a JSON string literal (quotes and escapes included).
void append_json_string(std::string& out, std::string_view s);

/// Appends one `--outcomes` line (with '\n'): line, trade_id, version, outcome, reason, seq.
void append_outcome_json(std::string& out, std::uint64_t line,
                         const std::optional<std::string>& trade_id,
                         const std::optional<std::int64_t>& version, const Outcome& outcome);

/// Appends one `positions` line (with '\n').
void append_position_json(std::string& out, const PositionRow& row);

/// Appends one `events` line (with '\n').
void append_event_json(std::string& out, const StoredEvent& e);

/// Appends `e` as an input event of spec section 1 (one JSON object, no '\n'; a CANCEL without
/// side, quantity and price): what `parse_event` reads back as `e`. For producers and tests.
void append_input_event_json(std::string& out, const TradeEvent& e);

}  // namespace tradecapture
