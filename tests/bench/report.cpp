// `election-bench report`: the scenarios' rows (<out>/<scenario>.tsv) as one Markdown table
// (bench-results.md) and one JSON file (bench-results.json), with the machine they ran on.
#include "common.hpp"

#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include <sys/utsname.h>

#ifndef ELECTION_BENCH_BUILD_TYPE
#define ELECTION_BENCH_BUILD_TYPE "unknown"
#endif

namespace election::bench {
namespace {

struct Entry {
  std::string scenario;
  Row row;
};

double parse_number(const std::string& s) { return s == "nan" ? nan : std::stod(s); }

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::string::size_type start = 0;
  for (;;) {
    const auto tab = line.find('\t', start);
    out.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) return out;
    start = tab + 1;
  }
}

std::string first_line_of(const std::string& command) {
  std::FILE* p = ::popen(command.c_str(), "r");
  if (!p) return "unknown";
  char buf[256] = {};
  const bool got = std::fgets(buf, sizeof buf, p) != nullptr;
  ::pclose(p);
  std::string s = got ? buf : "unknown";
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string file_value(const char* path, const std::string& key, char sep) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) != 0) continue;
    auto pos = line.find(sep);
    if (pos == std::string::npos) continue;
    std::string v = line.substr(pos + 1);
    v.erase(0, v.find_first_not_of(" \t\""));
    while (!v.empty() && (v.back() == '"' || v.back() == ' ')) v.pop_back();
    return v;
  }
  return "unknown";
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (std::isnan(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string md_cell(std::string s) {
  for (auto pos = s.find('|'); pos != std::string::npos; pos = s.find('|', pos + 2))
    s.replace(pos, 1, "\\|");
  return s;
}

}  // namespace

int run_report(const std::filesystem::path& out, const std::string& command,
               const std::string& mode) {
  const std::vector<std::string> order{"handover", "lock", "failover", "fanout",
                                       "scale",    "shards",   "startup"};
  std::vector<Entry> entries;
  std::vector<std::string> missing;
  for (const auto& scenario : order) {
    std::ifstream in(out / (scenario + ".tsv"));
    if (!in) {
      missing.push_back(scenario);
      continue;
    }
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const auto f = split_tabs(line);
      if (f.size() != 9)
        throw std::runtime_error("malformed line in " + scenario + ".tsv: " + line);
      Row r{f[0],
            f[1],
            parse_number(f[2]),
            f[3],
            parse_number(f[4]),
            f[5],
            std::stoi(f[6]),
            static_cast<std::size_t>(std::stoull(f[7])),
            f[8]};
      entries.push_back({scenario, std::move(r)});
    }
  }

  utsname u{};
  ::uname(&u);
  const std::string cpu = file_value("/proc/cpuinfo", "model name", ':');
  const unsigned cores = std::thread::hardware_concurrency();
  const std::string mem_kib = file_value("/proc/meminfo", "MemTotal", ':');
  const double mem_gib = std::atof(mem_kib.c_str()) / 1024.0 / 1024.0;
  const std::string os = file_value("/etc/os-release", "PRETTY_NAME", '=');
  const std::string etcd = first_line_of("etcd --version 2>/dev/null");
  const std::string etcdctl = first_line_of("etcdctl version 2>/dev/null");
  // Set by run.sh: the load average when the run began, and the source revision measured.
  std::string load = "unknown", revision = "unknown";
  if (const char* l = std::getenv("ELECTION_BENCH_LOAD")) load = l;
  if (const char* r = std::getenv("ELECTION_BENCH_REVISION")) revision = r;
  char date[64];
  const std::time_t t = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  const std::string build = ELECTION_BENCH_BUILD_TYPE;

  // JSON
  {
    std::ofstream json(out / "bench-results.json");
    json << "{\n  \"mode\": " << json_string(mode) << ",\n  \"command\": " << json_string(command)
         << ",\n  \"date\": " << json_string(date)
         << ",\n  \"machine\": {\"cpu\": " << json_string(cpu) << ", \"cores\": " << cores
         << ", \"memory_gib\": " << json_number(mem_gib) << ", \"os\": " << json_string(os)
         << ", \"kernel\": " << json_string(u.release)
         << ", \"load_average_at_start\": " << json_string(load)
         << "},\n  \"software\": {\"etcd\": " << json_string(etcd)
         << ", \"etcdctl\": " << json_string(etcdctl) << ", \"build\": " << json_string(build)
         << ", \"revision\": " << json_string(revision) << "},\n  \"missing\": [";
    for (std::size_t i = 0; i < missing.size(); ++i)
      json << (i ? ", " : "") << json_string(missing[i]);
    json << "],\n  \"results\": [\n";
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const auto& [scenario, r] = entries[i];
      json << "    {\"scenario\": " << json_string(scenario)
           << ", \"figure\": " << json_string(r.figure) << ", \"unit\": " << json_string(r.unit)
           << ", \"ours\": " << json_number(r.ours) << ", \"baseline\": "
           << (r.baseline_name.empty() ? std::string("null")
                                       : "{\"name\": " + json_string(r.baseline_name) +
                                             ", \"value\": " + json_number(r.baseline) + "}")
           << ", \"ratio\": " << json_number(r.ratio())
           << ", \"target\": " << (r.target.empty() ? "null" : json_string(r.target))
           << ", \"met\": "
           << (r.met < 0 ? "null"
               : r.met   ? "true"
                         : "false")
           << ", \"samples\": " << r.samples << ", \"note\": " << json_string(r.note) << "}"
           << (i + 1 < entries.size() ? ",\n" : "\n");
    }
    json << "  ]\n}\n";
    if (!json) throw std::runtime_error("cannot write bench-results.json");
  }

  // Markdown
  {
    std::ofstream md(out / "bench-results.md");
    char machine[512];
    std::snprintf(machine, sizeof machine, "%s, %u cores, %.0f GiB RAM, %s, Linux %s", cpu.c_str(),
                  cores, mem_gib, os.c_str(), u.release);
    md << "Machine: " << machine << "; load average at start: " << load << ".  \n";
    md << "Software: " << etcd << " (one member, on this machine); " << etcdctl << "; election "
       << revision << ", built " << build << ".  \n";
    md << "Command: `" << command << "` (" << mode << " mode, " << date << ").\n\n";
    md << "| figure | ours | baseline | baseline value | ratio | target | met? |\n";
    md << "|---|---:|---|---:|---:|---|---|\n";
    std::vector<std::string> notes;
    for (const auto& [scenario, r] : entries) {
      char ratio[32] = "-";
      if (!std::isnan(r.ratio()))
        std::snprintf(ratio, sizeof ratio, r.ratio() < 0.1 ? "%.2g" : "%.2f", r.ratio());
      std::string figure = md_cell(r.figure);
      if (!r.note.empty()) {
        notes.push_back(r.note);
        figure += " [" + std::to_string(notes.size()) + "]";
      }
      md << "| " << figure << " | " << format_value(r.ours, r.unit) << " | "
         << (r.baseline_name.empty() ? "-" : md_cell(r.baseline_name)) << " | "
         << format_value(r.baseline, r.unit) << " | " << ratio << " | "
         << (r.target.empty() ? "-" : md_cell(r.target)) << " | "
         << (r.met < 0 ? "-"
             : r.met   ? "yes"
                       : "**no**")
         << " |\n";
    }
    if (!missing.empty()) {
      md << "\nNot run: ";
      for (std::size_t i = 0; i < missing.size(); ++i) md << (i ? ", " : "") << missing[i];
      md << ".\n";
    }
    if (!notes.empty()) md << "\n";
    for (std::size_t i = 0; i < notes.size(); ++i) md << "[" << i + 1 << "] " << notes[i] << "  \n";
    if (!md) throw std::runtime_error("cannot write bench-results.md");
  }
  std::cout << "wrote " << (out / "bench-results.md").string() << " and "
            << (out / "bench-results.json").string() << '\n';
  return missing.empty() ? 0 : 1;
}

}  // namespace election::bench
