using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Deid.Pipeline;

namespace Deid.Cli.Batch;

/// <summary>Clip states in the manifest. The latest line for an input wins.</summary>
public static class ClipStatus
{
    public const string Queued = "queued";          // planned for a Slurm array task that has not started it
    public const string Running = "running";
    public const string Done = "done";
    public const string Failed = "failed";
    public const string Interrupted = "interrupted"; // cancelled (Ctrl-C, scancel): not an attempt, redone next run
}

/// <summary>
/// One line of the JSONL manifest. <c>type</c> is <c>batch</c> (the header: OUT_DIR and the job options), <c>clip</c>
/// (a clip's state; the latest line per input wins), <c>plan</c> (a Slurm array: which clips each task runs) or
/// <c>job</c> (the job id sbatch gave a plan, or its refusal).
/// </summary>
public sealed class ManifestRecord
{
    [JsonPropertyName("type")] public string Type { get; set; } = "clip";
    [JsonPropertyName("time")] public DateTimeOffset Time { get; set; } = DateTimeOffset.UtcNow;

    // header
    [JsonPropertyName("version")] public int? Version { get; set; }
    [JsonPropertyName("outDir")] public string? OutDir { get; set; }
    [JsonPropertyName("options")] public JsonObject? Options { get; set; }
    [JsonPropertyName("optionsHash")] public string? OptionsHash { get; set; }

    // clip
    [JsonPropertyName("input")] public string? Input { get; set; }
    [JsonPropertyName("size")] public long? Size { get; set; }
    [JsonPropertyName("mtime")] public string? Mtime { get; set; }
    [JsonPropertyName("sha256")] public string? Sha256 { get; set; }
    [JsonPropertyName("output")] public string? Output { get; set; }
    [JsonPropertyName("report")] public string? Report { get; set; }
    [JsonPropertyName("status")] public string? Status { get; set; }
    [JsonPropertyName("error")] public string? Error { get; set; }
    [JsonPropertyName("attempt")] public int? Attempt { get; set; }
    [JsonPropertyName("started")] public DateTimeOffset? Started { get; set; }
    [JsonPropertyName("seconds")] public double? Seconds { get; set; }
    [JsonPropertyName("frames")] public long? Frames { get; set; }
    [JsonPropertyName("faces")] public long? Faces { get; set; }
    [JsonPropertyName("replaced")] public long? Replaced { get; set; }
    [JsonPropertyName("tracked")] public long? Tracked { get; set; }
    [JsonPropertyName("fallbackBlurred")] public long? FallbackBlurred { get; set; }
    [JsonPropertyName("audited")] public bool? Audited { get; set; }
    [JsonPropertyName("leaksFound")] public long? LeaksFound { get; set; }
    [JsonPropertyName("leaksFixed")] public long? LeaksFixed { get; set; }
    [JsonPropertyName("leaksBlurred")] public long? LeaksBlurred { get; set; }
    [JsonPropertyName("warnings")] public int? Warnings { get; set; }
    [JsonPropertyName("outputSize")] public long? OutputSize { get; set; }
    [JsonPropertyName("outputMtime")] public string? OutputMtime { get; set; }
    [JsonPropertyName("host")] public string? Host { get; set; }
    [JsonPropertyName("pid")] public int? Pid { get; set; }

    // plan / job (and the clip lines a Slurm task writes)
    [JsonPropertyName("plan")] public string? Plan { get; set; }
    [JsonPropertyName("task")] public int? Task { get; set; }
    [JsonPropertyName("tasks")] public List<List<string>>? Tasks { get; set; }
    [JsonPropertyName("retry")] public int? Retry { get; set; }
    [JsonPropertyName("script")] public string? Script { get; set; }
    [JsonPropertyName("jobId")] public string? JobId { get; set; }

    public ManifestRecord Clone() => (ManifestRecord)MemberwiseClone();
}

/// <summary>The manifest folded: header, latest record per input, plans and jobs.</summary>
public sealed class ManifestState
{
    public ManifestRecord? Header { get; set; }
    public Dictionary<string, ManifestRecord> Clips { get; } = new(StringComparer.Ordinal);
    /// <summary>Inputs in the order they first appeared.</summary>
    public List<string> Order { get; } = [];
    public Dictionary<string, ManifestRecord> Plans { get; } = new(StringComparer.Ordinal);
    public List<ManifestRecord> Jobs { get; } = [];
    public int UnreadableLines { get; set; }

    public string? JobOf(string plan) => Jobs.LastOrDefault(j => j.Plan == plan && j.JobId != null)?.JobId;
}

/// <summary>
/// The resumable record of a batch: an append-only JSONL file. Every writer (the local runner, each Slurm array task)
/// appends whole lines under an exclusive lock on <c>M.lock</c>, so concurrent tasks never interleave; a reader skips
/// a torn last line (a process killed mid-write).
/// </summary>
public sealed class BatchManifest(string path)
{
    public const int FormatVersion = 1;
    public string Path { get; } = System.IO.Path.GetFullPath(path);
    public string LockPath => System.IO.Path.Combine(System.IO.Path.GetDirectoryName(Path)!, "." + System.IO.Path.GetFileName(Path) + ".lock");

    public static readonly JsonSerializerOptions Json = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
    };

    public bool Exists => File.Exists(Path);

    public ManifestState Load()
    {
        var state = new ManifestState();
        if (!File.Exists(Path)) return state;
        foreach (var line in ReadLines())
        {
            if (line.Length == 0) continue;
            ManifestRecord? r;
            try { r = JsonSerializer.Deserialize<ManifestRecord>(line, Json); }
            catch (JsonException) { state.UnreadableLines++; continue; }
            if (r is null) continue;
            switch (r.Type)
            {
                case "batch": state.Header ??= r; break;
                case "plan" when r.Plan != null: state.Plans[r.Plan] = r; break;
                case "job": state.Jobs.Add(r); break;
                case "clip" when r.Input != null:
                    if (!state.Clips.ContainsKey(r.Input)) state.Order.Add(r.Input);
                    state.Clips[r.Input] = r;
                    break;
            }
        }
        return state;
    }

    private IEnumerable<string> ReadLines()
    {
        using var stream = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        while (reader.ReadLine() is { } line) yield return line;
    }

    public void Append(params ManifestRecord[] records) => Append((IEnumerable<ManifestRecord>)records);

    public void Append(IEnumerable<ManifestRecord> records)
    {
        var text = new StringBuilder();
        foreach (var r in records) text.Append(JsonSerializer.Serialize(r, Json)).Append('\n');
        if (text.Length == 0) return;
        var bytes = Encoding.UTF8.GetBytes(text.ToString());
        using (Lock())
        using (var stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
    }

    /// <summary>An exclusive lock on the manifest's lock file (flock); waits up to two minutes for another writer.</summary>
    public IDisposable Lock()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (true)
        {
            try { return new FileStream(LockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException) when (DateTime.UtcNow < deadline) { Thread.Sleep(20 + Random.Shared.Next(30)); }
        }
    }

    // ---- options: what is stored, hashed and compared ----

    /// <summary>
    /// Options that only change how fast a job runs, not what it writes: left out of the hash so a rerun may use other
    /// workers, another batch size or a GPU (a Slurm task sets its own).
    /// </summary>
    private static readonly string[] ExecutionOnly = ["workers", "batchSize", "batchTimeoutMs", "device"];

    /// <summary>The whole job as the header stores it (a Slurm task runs it from there).</summary>
    public static JsonObject OptionsJson(AnonymizeOptions options) => JsonSerializer.SerializeToNode(options, Json)!.AsObject();

    /// <summary>The options that decide what is written: what the hash covers and a mismatch names.</summary>
    public static JsonObject Hashed(JsonObject options)
    {
        var node = options.DeepClone().AsObject();
        foreach (var k in ExecutionOnly) node.Remove(k);
        return node;
    }

    public static string OptionsHash(JsonObject options)
    {
        var canonical = Canonical(Hashed(options)).ToJsonString();
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical)))[..16];
    }

    public static AnonymizeOptions ReadOptions(JsonObject options) =>
        options.Deserialize<AnonymizeOptions>(Json) ?? throw new InvalidDataException("the manifest's options are empty");

    /// <summary>"mode: blur (manifest) vs pixelate (now)" for every option that differs.</summary>
    public static IReadOnlyList<string> Differences(JsonObject manifest, JsonObject now)
    {
        var a = Flatten(manifest);
        var b = Flatten(now);
        return a.Keys.Union(b.Keys).Order(StringComparer.Ordinal)
            .Where(k => a.GetValueOrDefault(k) != b.GetValueOrDefault(k))
            .Select(k => $"{k}: {a.GetValueOrDefault(k) ?? "unset"} in the manifest, {b.GetValueOrDefault(k) ?? "unset"} now")
            .ToList();
    }

    private static Dictionary<string, string> Flatten(JsonNode? node, string prefix = "", Dictionary<string, string>? into = null)
    {
        into ??= new Dictionary<string, string>(StringComparer.Ordinal);
        switch (node)
        {
            case JsonObject o when o.Count > 0:
                foreach (var (k, v) in o) Flatten(v, prefix.Length == 0 ? k : $"{prefix}.{k}", into);
                break;
            case JsonObject:
                into[prefix] = "{}";
                break;
            case null:
                break;
            default:
                into[prefix] = node.ToJsonString();
                break;
        }
        return into;
    }

    private static JsonNode? Canonical(JsonNode? node) => node switch
    {
        JsonObject o => new JsonObject(o.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, Canonical(p.Value)))),
        JsonArray a => new JsonArray(a.Select(Canonical).ToArray()),
        null => null,
        _ => node.DeepClone(),
    };

    // ---- files ----

    public static string Mtime(FileInfo f) => f.LastWriteTimeUtc.ToString("o", CultureInfo.InvariantCulture);

    public static string Sha256Of(string path)
    {
        using var s = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(s));
    }
}
