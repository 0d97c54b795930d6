using System.Diagnostics;

namespace Deid.Bench;

/// <summary>
/// Issue 14's benchmark, clips per hour on short cuts of the shared clips (blur, hog): one `deid anonymize` process
/// per clip (each paying process and model start-up), `deid batch --jobs 1`, `deid batch --jobs 2`, and, where a
/// Slurm cluster answers (SLURM_CONF / sinfo), `deid batch --slurm --submit` on it.
/// </summary>
public static class BatchBench
{
    private const double Seconds = 2;   // length of each cut
    private const int Width = 256;

    public static void Run(BenchResults r)
    {
        var deid = DeidExe();
        if (deid is null) { Console.Error.WriteLine("skip batch: the deid executable is not built (make setup)"); return; }
        var videos = Path.Combine(Suites.Shared, "media", "videos");
        var clips = new[] { "talk_small.mp4", "talk_d3.mp4", "wide_s13.mp4", "talk_d0_noaudio.mp4" }.Where(c => File.Exists(Path.Combine(videos, c))).ToList();
        if (clips.Count == 0) { Console.Error.WriteLine($"skip batch: no clips in {videos}"); return; }
        var tmp = Directory.CreateTempSubdirectory("deid-bench-batch-").FullName;
        try
        {
            var inDir = Directory.CreateDirectory(Path.Combine(tmp, "in")).FullName;
            foreach (var c in clips)
                Run("ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error", "-i", Path.Combine(videos, c), "-t", Seconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    "-vf", $"scale={Width}:-2", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", Path.Combine(inDir, c));
            var extra = new Dictionary<string, object> { ["clips"] = clips.Count, ["clipSeconds"] = Seconds, ["width"] = Width, ["cores"] = Environment.ProcessorCount };
            const string suite = "batch";

            var sw = Stopwatch.StartNew();
            foreach (var c in clips) Run(deid, "anonymize", Path.Combine(inDir, c), "-o", Path.Combine(tmp, "single-" + c));
            r.Add(new(suite, "sequential `deid anonymize` processes", PerHour(clips.Count, sw.Elapsed), "clips/h", extra));

            foreach (var jobs in new[] { 1, 2 })
            {
                sw.Restart();
                Run(deid, "batch", inDir, "-o", Path.Combine(tmp, $"jobs{jobs}"), "--jobs", jobs.ToString());
                r.Add(new(suite, $"deid batch --jobs {jobs}", PerHour(clips.Count, sw.Elapsed), "clips/h", extra));
            }

            if (SlurmAnswers(out var why))
            {
                var outDir = Path.Combine(tmp, "slurm");
                sw.Restart();
                Run(deid, "batch", inDir, "-o", outDir, "--slurm", "--submit", "--cpus", "1");
                while (true)
                {
                    var code = RunCode(deid, "batch", "--status", outDir);
                    if (code != 4) break;
                    if (sw.Elapsed > TimeSpan.FromMinutes(20)) throw new TimeoutException("the Slurm batch did not finish in 20 minutes");
                    Thread.Sleep(500);
                }
                r.Add(new(suite, "deid batch --slurm --submit (1 cpu/task, local cluster)", PerHour(clips.Count, sw.Elapsed), "clips/h", extra));
            }
            else Console.Error.WriteLine($"skip batch slurm row: {why}");
        }
        finally
        {
            try { Directory.Delete(tmp, true); } catch (IOException) { }
        }
    }

    private static double PerHour(int clips, TimeSpan t) => Math.Round(clips / t.TotalHours, 1);

    private static string? DeidExe()
    {
        var artifacts = Environment.GetEnvironmentVariable("DEID_ARTIFACTS") is { Length: > 0 } a ? a : Path.Combine(Suites.RepoRoot, "artifacts");
        var exe = Path.Combine(artifacts, "bin", "Deid.Cli", "release", "deid");
        return File.Exists(exe) ? exe : null;
    }

    private static bool SlurmAnswers(out string why)
    {
        why = "no Slurm cluster answers (set SLURM_CONF to one; `sinfo` must work)";
        try { return RunCode("sinfo", "-h") == 0; }
        catch (System.ComponentModel.Win32Exception) { why = "sinfo is not installed"; return false; }
    }

    private static void Run(string exe, params string[] args)
    {
        var code = RunCode(exe, args);
        if (code is not 0) throw new InvalidOperationException($"{exe} {string.Join(' ', args)} exited with {code}");
    }

    private static int RunCode(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        _ = err.Result;
        return p.ExitCode;
    }
}
