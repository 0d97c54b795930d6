using System.Diagnostics;
using System.Globalization;

namespace Deid.TestSupport.Fuzz;

/// <summary>How one fuzz case ended; <see cref="Problem"/> is null when it ended the way the conventions require.</summary>
public sealed record FuzzOutcome(FuzzCase Case, int ExitCode, bool TimedOut, string StdErr, int? OutputFrames, int? InputFrames, string? Problem)
{
    public bool Ok => Problem == null;
    public string Summary => Ok
        ? (ExitCode == 0 ? $"exit 0, {OutputFrames} frames" : $"exit 1: {StdErr.Trim()}")
        : $"{Case}: {Problem}";
}

/// <summary>
/// Runs the real <c>deid anonymize</c> executable (blur) on a fuzz case as a separate process and judges the result:
/// within <see cref="Timeout"/>, either exit 0 with a complete, fully decodable output whose frame count equals what
/// ffmpeg can decode of the input, or exit 1 with exactly one stderr line (<c>deid: error: …</c>), no stack trace and no
/// output; never a temp or lock file left beside the output, and the input untouched.
/// </summary>
public sealed class FuzzRunner
{
    /// <summary>The command that runs deid: an executable and arguments before "anonymize" (e.g. dotnet + deid.dll).</summary>
    public required string Executable { get; init; }
    public IReadOnlyList<string> PrefixArgs { get; init; } = [];
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(3);
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>deid.dll beside the test binary, run with dotnet (test projects that reference Deid.Cli get it copied).</summary>
    public static FuzzRunner BesideTests(TimeSpan? timeout = null)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "deid.dll");
        return new FuzzRunner { Executable = "dotnet", PrefixArgs = [dll], Timeout = timeout ?? TimeSpan.FromMinutes(3) };
    }

    public FuzzOutcome Run(FuzzCase c, string workDir)
    {
        var dir = Directory.CreateDirectory(Path.Combine(workDir, $"case-{c.Id:D4}")).FullName;
        try { return RunIn(c, dir); }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private FuzzOutcome RunIn(FuzzCase c, string dir)
    {
        var input = Path.Combine(dir, c.FileName);
        File.WriteAllBytes(input, c.Data);
        var outDir = Directory.CreateDirectory(Path.Combine(dir, "out")).FullName;
        var output = Path.Combine(outDir, "out.mp4");

        var psi = new ProcessStartInfo(Executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in PrefixArgs) psi.ArgumentList.Add(a);
        foreach (var a in new[] { "anonymize", input, "-o", output, "--mode", "blur", "--workers", "1" }) psi.ArgumentList.Add(a);
        foreach (var (k, v) in Environment) psi.Environment[k] = v;
        psi.Environment.Remove("DEID_DEBUG");
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var exited = p.WaitForExit(Timeout);
        if (!exited)
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            p.WaitForExit(10_000);
            return new FuzzOutcome(c, -1, true, "", null, null, $"no result within {Timeout.TotalSeconds:0} s (hang)");
        }
        p.WaitForExit();
        var stderr = err.GetAwaiter().GetResult();
        stdout.GetAwaiter().GetResult();
        var code = p.ExitCode;

        string? problem = null;
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var errorLines = lines.Where(l => !l.StartsWith("deid: warning: ", StringComparison.Ordinal)).ToArray();
        var leftovers = Directory.EnumerateFileSystemEntries(outDir).Select(Path.GetFileName).Where(n => n != "out.mp4").ToList();
        if (!c.Data.AsSpan().SequenceEqual(File.ReadAllBytes(input))) problem = "the input was modified";
        else if (stderr.Contains("   at ", StringComparison.Ordinal) || stderr.Contains("Unhandled exception", StringComparison.Ordinal))
            problem = "stack trace on stderr: " + FirstLines(stderr);
        else if (leftovers.Count > 0) problem = "left beside the output: " + string.Join(", ", leftovers);

        int? outFrames = null, inFrames = null;
        if (problem == null && code == 0)
        {
            if (!File.Exists(output)) problem = "exit 0 without an output file";
            else
            {
                inFrames = DecodableFrames(input);
                var decode = Tool.Run("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-xerror", "-i", output, "-map", "0:v:0", "-f", "null", "-");
                outFrames = DecodableFrames(output);
                // Audio is copied packet for packet, so damage in the input's audio is (rightly) still there; ffmpeg's stream
                // probing reports it even when only the video is decoded. The video must decode without a single error.
                var videoErrors = decode.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Where(l => !AudioDecoders.Any(a => l.StartsWith(a, StringComparison.Ordinal))).ToList();
                if (decode.Code != 0 || videoErrors.Count > 0) problem = "output video does not decode cleanly: " + FirstLines(string.Join('\n', videoErrors));
                else if (outFrames != inFrames) problem = $"output has {outFrames} frames, ffmpeg decodes {inFrames} from the input";
            }
        }
        else if (problem == null && code == 1)
        {
            if (errorLines.Length != 1 || !errorLines[0].StartsWith("deid: error: ", StringComparison.Ordinal))
                problem = $"exit 1 needs exactly one 'deid: error:' line on stderr, got {errorLines.Length}: {FirstLines(stderr)}";
            else if (File.Exists(output)) problem = "exit 1 but an output file was left";
        }
        else if (problem == null) problem = $"exit code {code} (expected 0 or 1): {FirstLines(stderr)}";
        return new FuzzOutcome(c, code, false, stderr, outFrames, inFrames, problem);
    }

    private static readonly string[] AudioDecoders = ["[aac", "[mp3", "[opus", "[vorbis", "[ac3", "[eac3", "[flac", "[pcm"];

    /// <summary>Video frames ffmpeg decodes from a file (errors tolerated, as a player would), or null when it cannot open it.</summary>
    public static int? DecodableFrames(string path)
    {
        var r = Tool.Run("ffprobe", "-v", "quiet", "-select_streams", "v:0", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path);
        var first = r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim().Trim(',')).FirstOrDefault();
        return int.TryParse(first, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : null;
    }

    private static string FirstLines(string s)
    {
        var lines = s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Take(3);
        var text = string.Join(" | ", lines);
        return text.Length > 400 ? text[..400] : text;
    }
}
