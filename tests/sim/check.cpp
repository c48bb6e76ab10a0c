// The checker: judges a finished run against spec section 6 with an independent model.
//
// Its inputs are what the clients saw (submissions with their windows and outcomes), the log of
// commits the fault-injecting store applied, and the final contents of the memory store. The
// business rules come from make_position_processor(); idempotency, sequence numbers and which
// store instants an outcome may be read at are modelled here, never taken from the pipeline.
//
// Instants. The store's history is a sequence of commits; after k of them the store is in state
// S_k. A submission received when h0 commits had applied and reported when h1 had may be decided
// at any S_k with h0 <= k <= h1, or inside commit k (h0 <= k < h1) after a prefix of its own
// partition's events (a batch decides its events in order on the state its commit validates).
// With a deadline, k is also bounded by the commits applied when the host clock passed the
// deadline, or by a commit of that host sent before then (a commit under way still decides).
// An ACCEPTED outcome is decided by the commit that stored the event, so that commit must lie in
// the window: a host may not report as its own a write that another host made after its deadline.
//
// Sources. A source-fed partition's events are the messages of one stream, so once (4) holds its
// k-th stored event is the k-th message its sequential run accepts, so the position of every
// stored event follows from the model alone. The commit log also holds each commit's source rows,
// marks and the source events its batch completed (as the hook saw them): the mark each commit
// must write follows from those (the greatest position it decided in the partition), and the
// claims log every epoch the store handed out, so offsets (never past a
// message no commit completed), epochs (a commit applies only with the latest claim's row) and
// replays (only at or below a durable mark) are checked against the store's own history.

#include "sim.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <set>
#include <unordered_map>

namespace sim {
namespace {

bool same_event(const TradeEvent& a, const TradeEvent& b) {
  return a.trade_id == b.trade_id && a.version == b.version && a.same_content(b);
}

bool is_conflict(const Outcome& o) {
  return o.kind == OutcomeKind::Rejected && o.reason.rfind("conflict:", 0) == 0;
}

bool same_outcome(const Outcome& a, const Outcome& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == OutcomeKind::Accepted) return a.seq == b.seq;
  return a.reason == b.reason || (is_conflict(a) && is_conflict(b));
}

std::string show(const Outcome& o) {
  std::string s(to_string(o.kind));
  if (o.kind == OutcomeKind::Accepted) s += " seq " + std::to_string(o.seq);
  if (!o.reason.empty()) s += " (" + o.reason + ")";
  return s;
}

std::string show(const TradeEvent& e) {
  return std::string(to_string(e.type)) + " " + e.trade_id + " v" + std::to_string(e.version);
}

/// Where an event sits in the store's history.
struct Placed {
  std::size_t commit;  ///< index in the history log
  int partition;
  std::size_t j;       ///< position among its partition's events in that commit
  const StoredEvent* stored;
};

/// Section 3 for one event on a partition state whose idempotency key is absent.
Outcome decide(const Processor& proc, const PartitionState& st, const TradeEvent& e) {
  Outcome o = proc.decide(e, st).outcome;
  if (o.kind == OutcomeKind::Accepted) o.seq = st.seq + 1;
  return o;
}

PartitionState apply(const Processor& proc, const PartitionState& st, const TradeEvent& e) {
  Decision d = proc.decide(e, st);
  PartitionState next = st;
  next.position = d.position;
  next.trades[e.trade_id] = d.record;
  ++next.seq;
  return next;
}

/// The source checks (S1-S7), after (1)-(4) hold: the stored events of a source-fed partition
/// are then its sequential run's accepted messages, so the position of every stored event, and
/// with it every mark, is known without asking the core.
std::string check_sources(const CheckInput& in, const std::vector<std::vector<Placed>>& stored,
                          const std::vector<std::vector<std::uint64_t>>& model_seq,
                          const std::vector<PartitionState>& loaded) {
  const int np = static_cast<int>(in.partitions.size());
  const int ns = static_cast<int>(in.sources.size());
  std::map<PartitionKey, int> index;
  for (int p = 0; p < np; ++p) index[in.partitions[p]] = p;
  auto msg = [&](int st, std::int64_t x) {
    const auto [p, i] = in.sources[st].msgs[x];
    return "stream " + std::to_string(st) + " @" + std::to_string(x) + " (partition " +
           std::to_string(p) + " " + show(in.streams[p][i]) + ")";
  };
  // Positions: of each event of a source-fed partition; of its k-th stored event (the k-th the
  // sequential run accepts), and the running maximum of those (the mark after k stored events).
  std::vector<std::vector<std::int64_t>> pos_of(np), run_max(np);
  for (int st = 0; st < ns; ++st)
    for (std::size_t x = 0; x < in.sources[st].msgs.size(); ++x) {
      const auto [p, i] = in.sources[st].msgs[x];
      if (pos_of[p].empty()) pos_of[p].assign(in.streams[p].size(), -1);
      pos_of[p][i] = static_cast<std::int64_t>(x);
    }
  for (int p = 0; p < np; ++p) {
    if (in.fed_by[p] < 0) continue;
    std::int64_t m = -1;
    for (std::size_t i = 0; i < in.streams[p].size(); ++i)
      if (model_seq[p][i] > 0) run_max[p].push_back(m = std::max(m, pos_of[p][i]));
    if (run_max[p].size() != stored[p].size()) return "(S) partition length differs from the model";
  }
  // (S1) Marks: a stream's mark in a partition is the position of its last message decided
  // there, whatever the outcome. Every commit that completes messages of partition p above p's
  // mark (decided ones; replayed ones are at or below it) writes p's new mark, the greatest of
  // their positions, and a commit writes no other mark; every accepted message is covered by the
  // mark its commit wrote; the final store holds the last mark written.
  std::vector<std::int64_t> mark(np, -1);
  // Per partition: (commit, mark after it) for every commit that moved the mark.
  std::vector<std::vector<std::pair<std::size_t, std::int64_t>>> moves(np);
  std::vector<std::size_t> next_stored(np, 0);
  for (std::size_t c = 0; c < in.history.size(); ++c) {
    const CommitRecord& r = in.history[c];
    std::map<int, std::int64_t> top;  // partition -> the greatest position the commit completes
    for (const SourceEvent& e : r.source_events) {
      const int st = in.slots.at(e.stream).stream;
      const int p = in.sources[st].msgs[e.position].first;
      auto [it, fresh] = top.try_emplace(p, e.position);
      if (!fresh) it->second = std::max(it->second, e.position);
    }
    std::map<int, std::int64_t> written;
    for (const auto& [key, id, position] : r.marks) {
      const int p = index.at(key);
      if (in.fed_by[p] < 0 || id != stream_mark_id(in.fed_by[p]))
        return "(S1) commit #" + std::to_string(c) + " wrote mark " + id + " in partition " +
               std::to_string(p) + ", which its stream does not feed";
      written[p] = position;
    }
    for (const auto& [p, t] : top) {
      const auto w = written.find(p);
      if (t > mark[p] && (w == written.end() || w->second != t))
        return "(S1) commit #" + std::to_string(c) + " decided " +
               msg(in.fed_by[p], t) + " above the mark " + std::to_string(mark[p]) +
               ", but wrote " + (w == written.end() ? std::string("no mark") :
                                 "mark " + std::to_string(w->second));
    }
    for (const auto& [p, position] : written) {
      // Equal to the mark: a commit sent again after its acknowledgement was lost (it applied;
      // nothing moved since, so its checks held again and its marks are written as they were).
      const auto t = top.find(p);
      if (t == top.end() || t->second < mark[p] || position != t->second)
        return "(S1) commit #" + std::to_string(c) + " wrote mark " + std::to_string(position) +
               " in partition " + std::to_string(p) + " but decided nothing there at or above " +
               "the mark " + std::to_string(mark[p]) + " up to it";
      mark[p] = position;
      moves[p].emplace_back(c, position);
    }
    // Every event it stored, of a source-fed partition, is at or below that partition's mark.
    for (int p = 0; p < np; ++p) {
      if (in.fed_by[p] < 0) continue;
      for (; next_stored[p] < stored[p].size() && stored[p][next_stored[p]].commit == c;
           ++next_stored[p]) {
        if (run_max[p][next_stored[p]] > mark[p])
          return "(S1) commit #" + std::to_string(c) + " stored " +
                 msg(in.fed_by[p], run_max[p][next_stored[p]]) + " but left the mark at " +
                 std::to_string(mark[p]);
      }
    }
  }
  for (int p = 0; p < np; ++p) {
    std::map<std::string, std::int64_t, std::less<>> want;
    if (in.fed_by[p] >= 0 && mark[p] >= 0) want[stream_mark_id(in.fed_by[p])] = mark[p];
    if (loaded[p].source_marks != want)
      return "(S1) partition " + std::to_string(p) + ": the stored marks are not the last "
             "decided position of its stream";
  }

  // (S2) Source rows: every commit carries, for each stream whose events it completes, a row
  // with the epoch of the slot (the stream's latest claim when the commit applied: an old
  // member commits nothing once another claimed), and a row's next_offset never passes a
  // message no commit has completed yet (nothing is skipped on a re-read).
  std::vector<std::set<std::int64_t>> completed(ns);
  std::vector<std::int64_t> floor(ns, 0);  // the first position not completed by a commit yet
  std::vector<std::map<std::int64_t, std::size_t>> first_completed(ns);
  std::size_t claim = 0;
  std::vector<std::uint64_t> epoch(ns, 0);  // the latest claim's
  for (std::size_t c = 0; c < in.history.size(); ++c) {
    const CommitRecord& r = in.history[c];
    for (; claim < in.claims.size() && in.claims[claim].h <= c; ++claim)
      epoch[in.claims[claim].stream] = in.claims[claim].epoch;
    for (const SourceEvent& e : r.source_events) {
      const Slot& sl = in.slots.at(e.stream);
      if (std::none_of(r.sources.begin(), r.sources.end(), [&](const SourceOffset& row) {
            return row.partition == sl.stream && row.epoch == sl.epoch;
          }))
        return "(S2) commit #" + std::to_string(c) + " completes " + msg(sl.stream, e.position) +
               " of slot " + std::to_string(e.stream) + " without the slot's row";
      completed[sl.stream].insert(e.position);
      first_completed[sl.stream].try_emplace(e.position, c);
    }
    for (const SourceOffset& row : r.sources) {
      if (row.consumer != kSourceConsumer || row.topic != "t" || row.partition < 0 || row.partition >= ns)
        return "(S2) commit #" + std::to_string(c) + " carries a row of no stream";
      const int st = row.partition;
      if (row.epoch != epoch[st])
        return "(S2) commit #" + std::to_string(c) + " applied with stream " + std::to_string(st) +
               "'s row at epoch " + std::to_string(row.epoch) + ", but its latest claim is epoch " +
               std::to_string(epoch[st]);
      while (completed[st].count(floor[st])) ++floor[st];
      if (row.next_offset > floor[st])
        return "(S2) commit #" + std::to_string(c) + " stored stream " + std::to_string(st) +
               "'s offset " + std::to_string(row.next_offset) + ", past " + msg(st, floor[st]) +
               " that no commit has completed";
    }
  }
  // The end: every stream read, completed and stored to its end by its latest claimant.
  auto rows = in.store.source_offsets(kSourceConsumer);
  if (!rows) return "source_offsets failed on the memory store";
  if (static_cast<int>(rows.value().size()) != ns) return "(S2) the store holds rows of unknown streams";
  for (const SourceOffset& row : rows.value()) {
    const int st = row.partition;
    const auto len = static_cast<std::int64_t>(in.sources[st].msgs.size());
    if (row.next_offset != len || row.epoch != epoch[st] || floor[st] != len)
      return "(S2) stream " + std::to_string(st) + " ends stored at offset " +
             std::to_string(row.next_offset) + " epoch " + std::to_string(row.epoch) +
             " (length " + std::to_string(len) + ", latest claim epoch " +
             std::to_string(epoch[st]) + ", completed up to " + std::to_string(floor[st]) + ")";
  }

  // (S3) Per message: an ACCEPTED report is the sequential run's acceptance of this very message;
  // a message the run accepts is never reported otherwise; no message is reported twice (its
  // first report's commit moved its mark to it or past it, so a re-read replays it: before marks
  // moved on outcomes that write nothing, seeds 3923 and 6630 reported an AMEND/CANCEL first
  // REJECTED as `unknown trade` again as a conflict once a client's partition stored its key).
  // (S4) A replayed message is at or below its stream's mark in some state of its window, and a
  // commit before its report completed it. (S5) An abandoned message is never completed by its
  // slot later.
  std::map<std::pair<int, std::int64_t>, const Submission*> first;
  for (const Submission& s : in.subs) {
    if (s.stream < 0) continue;
    const int p = s.partition;
    const std::string what = msg(s.stream, s.position);
    if (s.state == Submission::State::replayed) {
      // The commit that moved the mark to it or past it, and the first that completed it.
      std::size_t moved = SIZE_MAX;
      for (std::size_t k = 0; k < moves[p].size() && moved == SIZE_MAX; ++k)
        if (moves[p][k].second >= s.position) moved = moves[p][k].first;
      auto fc = first_completed[s.stream].find(s.position);
      if (moved >= s.h1 || fc == first_completed[s.stream].end() || fc->second > moved)
        return "(S4) " + what + " was replayed (reported after " + std::to_string(s.h1) +
               " commits), but the mark reached it " +
               (moved == SIZE_MAX ? std::string("never") : "at commit #" + std::to_string(moved)) +
               " and " +
               (fc == first_completed[s.stream].end() ? std::string("no commit completed it")
                                                      : "commit #" + std::to_string(fc->second) +
                                                            " completed it first");
      continue;
    }
    if (s.state == Submission::State::abandoned) {
      for (std::size_t c = s.h1; c < in.history.size(); ++c)
        for (const SourceEvent& ev : in.history[c].source_events)
          if (ev.stream == s.slot && ev.position == s.position)
            return "(S5) " + what + " was abandoned by slot " + std::to_string(s.slot) +
                   ", then completed by its commit #" + std::to_string(c);
      continue;
    }
    if (s.state != Submission::State::decided) continue;
    const std::uint64_t want = model_seq[p][s.index];
    if ((s.outcome.kind == OutcomeKind::Accepted) != (want > 0) ||
        (want > 0 && s.outcome.seq != want))
      return "(S3) " + what + " reported " + show(s.outcome) + ", but the sequential run " +
             (want > 0 ? "accepts this message at seq " + std::to_string(want) : "does not accept it");
    auto [it, fresh] = first.try_emplace({s.stream, s.position}, &s);
    if (fresh) continue;
    const Submission& a = *it->second;
    return "(S3) " + what + " reported twice: " + show(a.outcome) + " (host " +
           std::to_string(a.host) + "), then " + show(s.outcome) + " (host " +
           std::to_string(s.host) + ")";
  }
  return {};
}

}  // namespace

std::string stream_mark_id(int stream) { return "\x1fsim\x1f" + std::to_string(stream); }

std::string check_run(const CheckInput& in) {
  const int np = static_cast<int>(in.partitions.size());
  std::map<PartitionKey, int> index;
  for (int p = 0; p < np; ++p) index[in.partitions[p]] = p;

  // (3) From the commit log: gap-free sequences per partition, every key stored once.
  std::vector<std::vector<Placed>> stored(np);
  std::unordered_map<IdempotencyKey, Placed, IdempotencyKeyHash> keys;
  for (std::size_t c = 0; c < in.history.size(); ++c) {
    std::vector<std::size_t> j(np, 0);
    for (const StoredEvent& se : in.history[c].events) {
      auto it = index.find(se.event.partition);
      if (it == index.end()) return "(3) a commit wrote a partition no client uses";
      const int p = it->second;
      if (se.seq != stored[p].size() + 1)
        return "(3) partition " + std::to_string(p) + ": commit #" + std::to_string(c) +
               " appended seq " + std::to_string(se.seq) + " after seq " +
               std::to_string(stored[p].size());
      Placed at{c, p, j[p]++, &se};
      stored[p].push_back(at);
      if (!keys.emplace(IdempotencyKey{se.event.trade_id, se.event.version}, at).second)
        return "(3) " + show(se.event) + " stored twice";
    }
  }

  // The store agrees with the log.
  std::vector<std::vector<StoredEvent>> scanned(np);
  if (!in.store.scan_events([&](const StoredEvent& se) {
        auto it = index.find(se.event.partition);
        if (it != index.end()) scanned[it->second].push_back(se);
        return true;
      }))
    return "scan_events failed on the memory store";
  for (int p = 0; p < np; ++p) {
    if (scanned[p].size() != stored[p].size())
      return "(3) partition " + std::to_string(p) + ": the store holds " +
             std::to_string(scanned[p].size()) + " events, the commit log " +
             std::to_string(stored[p].size());
    for (std::size_t i = 0; i < scanned[p].size(); ++i)
      if (scanned[p][i].seq != i + 1 || !same_event(scanned[p][i].event, stored[p][i].stored->event))
        return "(3) partition " + std::to_string(p) + ": stored seq " + std::to_string(i + 1) +
               " differs from the commit log";
  }

  // (4) Every stored event is acceptable where it stands, and the stored state is its fold.
  std::vector<std::vector<PartitionState>> states(np);
  for (int p = 0; p < np; ++p) {
    states[p].emplace_back();
    for (const Placed& at : stored[p]) {
      const TradeEvent& e = at.stored->event;
      Outcome o = decide(in.processor, states[p].back(), e);
      if (o.kind != OutcomeKind::Accepted)
        return "(4) partition " + std::to_string(p) + ": stored " + show(e) + " at seq " +
               std::to_string(at.stored->seq) + ", but the model decides " + show(o) + " there";
      states[p].push_back(apply(in.processor, states[p].back(), e));
    }
  }
  auto rows = in.store.positions();
  auto loaded = in.store.load_partitions(in.partitions);
  if (!rows || !loaded) return "positions/load_partitions failed on the memory store";
  std::size_t with_events = 0;
  for (int p = 0; p < np; ++p) with_events += stored[p].empty() ? 0 : 1;
  if (rows.value().size() != with_events) return "(4) positions lists the wrong partitions";
  for (const PositionRow& row : rows.value()) {
    const PartitionState& want = states[index.at(row.partition)].back();
    if (row.seq != want.seq || !(row.position == want.position))
      return "(4) partition " + row.partition.to_string() +
             ": the stored position is not the fold of its stored events";
  }
  for (int p = 0; p < np; ++p) {
    const PartitionState& got = loaded.value()[p];
    const PartitionState& want = states[p].back();
    if (got.seq != want.seq || !(got.position == want.position) || got.trades != want.trades)
      return "(4) partition " + std::to_string(p) + ": the stored trades are not the fold of its stored events";
  }

  // (1) Every outcome is the section-3 outcome at one instant between submission and report.
  auto length_at = [&](int p, std::size_t k) {  // partition length in S_k
    const auto& v = stored[p];
    return static_cast<std::size_t>(
        std::lower_bound(v.begin(), v.end(), k, [](const Placed& a, std::size_t c) { return a.commit < c; }) -
        v.begin());
  };
  // Whether `o` is the outcome of `e` at an instant of the window [h0, hmax]; else what is.
  auto judge = [&](const Submission& s, const TradeEvent& e, const Outcome& o, std::size_t hmax,
                   std::string& valid) {
    const int p = s.partition;
    if (o.kind == OutcomeKind::Accepted) {  // its own write lies in the window
      const std::size_t seq = o.seq;
      if (seq == 0 || seq > stored[p].size() || !same_event(stored[p][seq - 1].stored->event, e)) {
        valid = "another event (or none) is stored at that seq";
        return false;
      }
      const std::size_t c = stored[p][seq - 1].commit;
      valid = "the commit that stored it (#" + std::to_string(c) + ") lies outside the window";
      return c >= s.h0 && c < hmax;
    }
    auto k = keys.find(IdempotencyKey{e.trade_id, e.version});
    const Placed* held = k == keys.end() ? nullptr : &k->second;
    // The key present at some instant of the window: DUPLICATE or conflict.
    if (held && held->commit < hmax) {
      Outcome m = held->stored->event.same_content(e) ? Outcome::duplicate()
                                                      : Outcome::rejected("conflict: stored");
      if (same_outcome(m, o)) return true;
      valid += show(m) + "; ";
    }
    // The key absent: the processor on each partition length the window passes through, at the
    // earliest instant with that length (where the key is least likely present).
    const std::size_t lo = length_at(p, s.h0), hi = length_at(p, hmax);
    for (std::size_t len = lo; len <= hi; ++len) {
      bool absent = !held;
      if (held && len == lo) absent = held->commit >= s.h0;
      if (held && len > lo) {
        const Placed& last = stored[p][len - 1];  // the event that made the length `len`
        absent = held->commit > last.commit ||
                 (held->commit == last.commit && (held->partition != p || held->j > last.j));
      }
      if (!absent) continue;
      Outcome m = decide(in.processor, states[p][len], e);
      if (m.kind == OutcomeKind::Accepted) continue;
      if (same_outcome(m, o)) return true;
      valid += show(m) + " at length " + std::to_string(len) + "; ";
    }
    if (valid.empty()) valid = "ACCEPTED";
    valid = "the model allows only " + valid + " (window: commits " + std::to_string(s.h0) + ".." +
            std::to_string(hmax) + ", partition length " + std::to_string(lo) + ".." +
            std::to_string(hi) + ")";
    return false;
  };
  for (const Submission& s : in.subs) {
    if (s.state != Submission::State::decided) continue;
    const TradeEvent& e = in.streams[s.partition][s.index];
    // With a deadline, the window ends when the host clock passed it, or at a commit of this
    // host sent before then (a commit under way still decides).
    std::size_t hmax = s.h1;
    if (s.deadline && s.pass_step != UINT64_MAX) {
      std::size_t hd = s.h_pass;
      for (std::size_t c = s.h_pass; c < in.history.size(); ++c) {
        const CommitRecord& r = in.history[c];
        if (r.host == s.host && r.incarnation == s.incarnation && r.sent_step < s.pass_step) hd = c + 1;
      }
      hmax = std::min(hmax, hd);
    }
    std::string why;
    if (hmax >= s.h0 && judge(s, e, s.outcome, hmax, why)) continue;
    std::string late;
    if (hmax < s.h1 && judge(s, e, s.outcome, s.h1, late)) why = "it was decided after its deadline passed";
    return "(1) host " + std::to_string(s.host) + " partition " + std::to_string(s.partition) +
           " event #" + std::to_string(s.index) + " " + show(e) +
           (s.deadline ? " (with deadline)" : "") + ": reported " + show(s.outcome) + ", but " + why;
  }

  // (4) The result equals a sequential run of every stream. Across partitions the global key
  // (trade_id, version) goes to whichever partition stored it: another partition's copy is
  // rejected there, whatever the order. `model_seq[p][i]`: the seq at which the sequential run
  // accepts event i of partition p, 0 when it does not.
  std::vector<std::vector<std::uint64_t>> model_seq(np);
  for (int p = 0; p < np; ++p) {
    PartitionState st;
    std::vector<const TradeEvent*> accepted;
    std::set<IdempotencyKey> own;
    model_seq[p].assign(in.streams[p].size(), 0);
    for (std::size_t i = 0; i < in.streams[p].size(); ++i) {
      const TradeEvent& e = in.streams[p][i];
      IdempotencyKey key{e.trade_id, e.version};
      auto k = keys.find(key);
      if (own.count(key) || (k != keys.end() && k->second.partition != p)) continue;
      if (decide(in.processor, st, e).kind != OutcomeKind::Accepted) continue;
      st = apply(in.processor, st, e);
      own.insert(key);
      accepted.push_back(&e);
      model_seq[p][i] = st.seq;
    }
    for (std::size_t i = 0; i < std::max(accepted.size(), stored[p].size()); ++i) {
      if (i >= accepted.size() || i >= stored[p].size() ||
          !same_event(*accepted[i], stored[p][i].stored->event))
        return "(4) partition " + std::to_string(p) + " differs from a sequential run at seq " +
               std::to_string(i + 1) + ": sequential " +
               (i < accepted.size() ? show(*accepted[i]) : "nothing") + ", stored " +
               (i < stored[p].size() ? show(stored[p][i].stored->event) : "nothing");
    }
    if (!(st.position == states[p].back().position))
      return "(4) partition " + std::to_string(p) + ": position differs from a sequential run";
  }
  return check_sources(in, stored, model_seq, loaded.value());
}

}  // namespace sim
