using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Deid.Media;

namespace Deid.Cli.Batch;

/// <summary>One clip of a batch: the input, and where its anonymized video and report go under OUT_DIR.</summary>
public sealed record BatchClip(string Input, string Relative, string Output, string Report)
{
    /// <summary>Frames the clip is expected to have (container header or duration × rate), for the ETA; 0 if unknown.</summary>
    public long EstimatedFrames { get; init; }
}

/// <summary>Bad batch input: the batch cannot start (one line, exit code 1).</summary>
public sealed class BatchException(string message) : Exception(message);

/// <summary>
/// Turns INPUTS (folders, globs, list files, video files) into clips with mirrored output paths. Folders are searched
/// recursively and their video files found by probing (ffprobe), not by extension; hidden files and folders are
/// skipped.
/// </summary>
public static partial class BatchInputs
{
    /// <summary>Extensions of files taken as clips even when ffprobe cannot read them (so a corrupt video is reported, not silently skipped).</summary>
    private static readonly HashSet<string> VideoExtensions = new(StringComparer.OrdinalIgnoreCase)
    {
        ".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv", ".3gp", ".mxf", ".ogv", ".dv",
    };

    private static readonly HashSet<string> ListExtensions = new(StringComparer.OrdinalIgnoreCase) { ".txt", ".list", ".lst", ".jsonl" };

    public sealed record Result(IReadOnlyList<BatchClip> Clips, int SkippedFiles);

    /// <param name="known">Inputs the manifest already knows as clips (unchanged): not probed again.</param>
    public static Result Discover(IReadOnlyList<string> inputs, string outDir, Func<string, bool>? known = null)
    {
        if (inputs.Count == 0) throw new BatchException("no INPUTS given (a folder, a glob, a list file or video files)");
        var outFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outDir));
        var found = new List<(string Input, string Root, string? Relative)>();
        var skipped = 0;
        foreach (var raw in inputs)
        {
            if (Directory.Exists(raw))
            {
                var root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(raw));
                if (IsUnder(outFull, root))
                    throw new BatchException($"OUT_DIR {outDir} is inside the input folder {raw}: its outputs would be taken as inputs by the next run; choose an OUT_DIR outside it");
                var files = Enumerate(root).ToList();
                var (clips, skip) = Probe(files, known);
                skipped += skip;
                found.AddRange(clips.Select(f => (f, root, (string?)null)));
            }
            else if (raw.IndexOfAny(['*', '?', '[']) >= 0)
            {
                var (root, regex, segments) = ParseGlob(raw);
                if (IsUnder(outFull, root) && GlobReaches(segments, Path.GetRelativePath(root, outFull)))
                    throw new BatchException($"OUT_DIR {outDir} is inside what the glob {raw} matches: its outputs would be taken as inputs by the next run; choose an OUT_DIR outside it");
                if (!Directory.Exists(root)) continue;
                foreach (var f in Enumerate(root))
                    if (regex.IsMatch(Path.GetRelativePath(root, f).Replace('\\', '/')))
                        found.Add((f, root, null));
            }
            else if (File.Exists(raw) && ListExtensions.Contains(Path.GetExtension(raw)))
            {
                found.AddRange(ReadList(raw));
            }
            else if (File.Exists(raw))
            {
                var full = Path.GetFullPath(raw);
                found.Add((full, Path.GetDirectoryName(full)!, null));
            }
            else throw new BatchException($"input not found: {raw} (a folder, a glob, a list file or a video file)");
        }

        var clipsOut = new List<BatchClip>();
        var byOutput = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (input, root, given) in found)
        {
            if (!seen.Add(input)) continue;
            var rel = given ?? Path.GetRelativePath(root, input);
            var ext = Path.GetExtension(rel);
            var outRel = given != null || OutputPaths.SupportedExtensions.Contains(ext.ToLowerInvariant()) ? rel : Path.ChangeExtension(rel, ".mp4");
            var output = Path.GetFullPath(Path.Combine(outFull, outRel));
            if (!IsUnder(output, outFull))
                throw new BatchException($"the output of {input} ({outRel}) would lie outside OUT_DIR");
            if (byOutput.TryGetValue(output, out var other))
                throw new BatchException($"two inputs would be written to the same output {Path.GetRelativePath(outFull, output)}: {other} and {input}");
            if (OutputPaths.SameFile(input, output))
                throw new BatchException($"the output of {input} is the input itself (OUT_DIR mirrors the input folder onto itself)");
            byOutput[output] = input;
            clipsOut.Add(new BatchClip(input, rel, output, output + ".report.json"));
        }
        // A report path may not be another clip's output either (x.mp4.report.json is not a video name, so only the manifest and summary can collide).
        foreach (var c in clipsOut)
            if (Path.GetRelativePath(outFull, c.Output) is "summary.json" or "summary.html" or "manifest.jsonl")
                throw new BatchException($"the output {c.Output} would overwrite the batch's own {Path.GetFileName(c.Output)}");
        if (clipsOut.Count == 0)
            throw new BatchException($"no inputs found: no video files in {string.Join(", ", inputs)}" + (skipped > 0 ? $" ({skipped} files that are not media were skipped)" : ""));
        return new Result(clipsOut, skipped);
    }

    /// <summary>Every file below <paramref name="root"/>, hidden files and folders (and deid's temp files) left out, in a stable order.</summary>
    private static IEnumerable<string> Enumerate(string root)
    {
        var opts = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.Hidden | FileAttributes.System, ReturnSpecialDirectories = false };
        return Directory.EnumerateFiles(root, "*", opts)
            .Where(f => !Path.GetRelativePath(root, f).Split(Path.DirectorySeparatorChar).Any(s => s.StartsWith('.')))
            .Order(StringComparer.Ordinal);
    }

    /// <summary>Which files are clips: what ffprobe reads as audio/video media (not a still image or text), or has a video extension.</summary>
    private static (List<string> Clips, int Skipped) Probe(List<string> files, Func<string, bool>? known)
    {
        var keep = new ConcurrentBag<string>();
        Parallel.ForEach(files, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(2, Environment.ProcessorCount) }, f =>
        {
            if (known?.Invoke(f) == true || VideoExtensions.Contains(Path.GetExtension(f)) || IsMedia(f)) keep.Add(f);
        });
        var list = keep.Order(StringComparer.Ordinal).ToList();
        return (list, files.Count - list.Count);
    }

    private static bool IsMedia(string path)
    {
        try
        {
            if (new FileInfo(path).Length == 0) return false;
            var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DEID_FFPROBE") is { Length: > 0 } p ? p : "ffprobe")
            { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "-v", "error", "-print_format", "json", "-show_entries", "format=format_name:stream=codec_type:stream_disposition=attached_pic", path })
                psi.ArgumentList.Add(a);
            using var proc = Process.Start(psi)!;
            var err = proc.StandardError.ReadToEndAsync();
            var json = proc.StandardOutput.ReadToEnd();
            proc.WaitForExit();
            _ = err.Result;
            if (proc.ExitCode != 0) return false;
            using var doc = JsonDocument.Parse(json);
            var format = doc.RootElement.TryGetProperty("format", out var f) && f.TryGetProperty("format_name", out var n) ? n.GetString() ?? "" : "";
            if (format is "tty" or "image2" or "lrc" or "srt" or "ass" or "webvtt" || format.EndsWith("_pipe", StringComparison.Ordinal)) return false;
            if (!doc.RootElement.TryGetProperty("streams", out var streams)) return false;
            return streams.EnumerateArray().Any(s => s.TryGetProperty("codec_type", out var t) && t.GetString() is "video" or "audio");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or System.ComponentModel.Win32Exception) { return false; }
    }

    /// <summary>
    /// A text list (one path a line, # comments) or JSONL (<c>{"input": PATH, "output": REL}</c>, output optional);
    /// relative paths are relative to the list's folder. Outputs mirror the entries' common folder.
    /// </summary>
    private static IEnumerable<(string Input, string Root, string? Relative)> ReadList(string listPath)
    {
        var baseDir = Path.GetDirectoryName(Path.GetFullPath(listPath))!;
        var entries = new List<(string Input, string? Output)>();
        var jsonl = Path.GetExtension(listPath).Equals(".jsonl", StringComparison.OrdinalIgnoreCase);
        var lineNo = 0;
        foreach (var rawLine in File.ReadLines(listPath))
        {
            lineNo++;
            var line = rawLine.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            if (jsonl)
            {
                try
                {
                    using var doc = JsonDocument.Parse(line);
                    var input = doc.RootElement.GetProperty("input").GetString() ?? throw new BatchException($"{listPath}:{lineNo}: \"input\" is empty");
                    var output = doc.RootElement.TryGetProperty("output", out var o) ? o.GetString() : null;
                    if (output != null && Path.IsPathRooted(output)) throw new BatchException($"{listPath}:{lineNo}: \"output\" must be relative to OUT_DIR");
                    entries.Add((input, output));
                }
                catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
                {
                    throw new BatchException($"{listPath}:{lineNo}: not a JSON object with an \"input\" path");
                }
            }
            else entries.Add((line, null));
        }
        var full = entries.Select(e => (Input: Path.GetFullPath(Path.Combine(baseDir, e.Input)), e.Output)).ToList();
        foreach (var (input, _) in full)
            if (!File.Exists(input)) throw new BatchException($"{listPath} names a file that does not exist: {input}");
        var root = CommonFolder(full.Select(e => Path.GetDirectoryName(e.Input)!));
        return full.Select(e => (e.Input, root, e.Output));
    }

    private static string CommonFolder(IEnumerable<string> dirs)
    {
        string? common = null;
        foreach (var d in dirs)
        {
            if (common == null) { common = d; continue; }
            while (!IsUnder(d, common)) common = Path.GetDirectoryName(common) ?? "/";
        }
        return common ?? "/";
    }

    public static bool IsUnder(string path, string folder)
    {
        var p = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        var f = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        return p == f || p.StartsWith(f.EndsWith(Path.DirectorySeparatorChar) ? f : f + Path.DirectorySeparatorChar, StringComparison.Ordinal);
    }

    /// <summary>"/data/**/*.mp4" → root /data, a regex over paths relative to it, and the pattern's segments.</summary>
    private static (string Root, Regex Regex, string[] Segments) ParseGlob(string glob)
    {
        var full = Path.GetFullPath(glob);
        var parts = full.Split('/');
        var firstWild = Array.FindIndex(parts, s => s.IndexOfAny(['*', '?', '[']) >= 0);
        var root = string.Join('/', parts[..firstWild]);
        if (root.Length == 0) root = "/";
        var segments = parts[firstWild..];
        var rx = new System.Text.StringBuilder("^");
        for (var i = 0; i < segments.Length; i++)
        {
            var seg = segments[i];
            var last = i == segments.Length - 1;
            if (seg == "**") { rx.Append(last ? ".*" : "(?:[^/]+/)*"); continue; }
            rx.Append(SegmentRegex(seg));
            if (!last) rx.Append('/');
        }
        rx.Append('$');
        return (root, new Regex(rx.ToString(), RegexOptions.CultureInvariant), segments);
    }

    private static string SegmentRegex(string seg)
    {
        var sb = new System.Text.StringBuilder();
        for (var i = 0; i < seg.Length; i++)
        {
            var c = seg[i];
            if (c == '*') sb.Append("[^/]*");
            else if (c == '?') sb.Append("[^/]");
            else if (c == '[' && seg.IndexOf(']', i + 1) is var end && end > i)
            {
                var body = seg[(i + 1)..end];
                sb.Append('[').Append(body.StartsWith('!') ? "^" + Regex.Escape(body[1..]) : Regex.Escape(body)).Append(']');
                i = end;
            }
            else sb.Append(Regex.Escape(c.ToString()));
        }
        return sb.ToString();
    }

    /// <summary>Whether a glob could match files below the folder <paramref name="relative"/> (relative to its root).</summary>
    private static bool GlobReaches(string[] segments, string relative)
    {
        if (relative == ".") return true;
        var dirs = relative.Split('/');
        for (var i = 0; i < dirs.Length; i++)
        {
            if (i >= segments.Length - 1) return false; // the pattern ends (in a file name) before reaching OUT_DIR's depth
            if (segments[i] == "**") return true;
            if (!Regex.IsMatch(dirs[i], "^" + SegmentRegex(segments[i]) + "$")) return false;
        }
        return true;
    }

    /// <summary>Expected frames from ffprobe's header values (0 when unknown); cheap, for the progress ETA.</summary>
    public static long EstimateFrames(string path)
    {
        try
        {
            var info = MediaProbe.Probe(path);
            return info.FrameCount ?? (long)Math.Round(info.Duration.TotalSeconds * info.AverageFrameRate.Value);
        }
        catch (MediaException) { return 0; }
    }
}
