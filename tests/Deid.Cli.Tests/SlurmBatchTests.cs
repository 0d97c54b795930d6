using System.Diagnostics;
using System.Text.Json;
using Deid.Cli.Batch;
using Deid.TestSupport;
using static Deid.Cli.Tests.BatchTestSupport;

namespace Deid.Cli.Tests;

/// <summary>
/// `deid batch --slurm --submit` on a real one-node Slurm cluster started on this machine: a 3-clip job array runs to
/// the end; a second submission after deleting one output runs only that clip; a job Slurm refuses is reported in its
/// words.
/// </summary>
public sealed class SlurmBatchTests : IDisposable
{
    private readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    private static int WaitForBatch(SlurmCluster cluster, string outDir, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var s = RunDeid(cluster.Env, "batch", "--status", outDir);
            if (s.Code != BatchExit.Unfinished) return s.Code;
            if (clock.Elapsed > timeout) throw new TimeoutException($"the Slurm batch did not finish in {timeout}: {s.StdOut}");
            Thread.Sleep(1000);
        }
    }

    [Fact]
    public void SubmitToASingleNodeCluster_RunsTheArray_AndAResubmissionRedoesOnlyTheMissingClip()
    {
        using var cluster = new SlurmCluster();
        if (cluster.SkipReason is { } why) Assert.Skip(why);

        var inDir = Directory.CreateDirectory(_tmp.File("in")).FullName;
        foreach (var n in new[] { "a", "b", "c" }) File.Copy(Clip(n), Path.Combine(inDir, n + ".mp4"));
        var outDir = _tmp.File("out");
        var manifest = Path.Combine(outDir, "manifest.jsonl");

        var r = RunDeid(cluster.Env, "batch", inDir, "-o", outDir, "--slurm", "--submit", "--cpus", "1", "--array-max", "2");
        Assert.True(r.Code == 0, r.StdOut + r.StdErr);
        Assert.Matches(@"submitted batch job \d+: 3 clip\(s\) in 3 array task\(s\)", r.StdOut);
        var status = WaitForBatch(cluster, outDir, TimeSpan.FromMinutes(5));
        var logs = string.Join("\n", Directory.GetFiles(Path.Combine(outDir, ".deid-batch", "logs")).Select(File.ReadAllText));
        Assert.True(status == 0, $"status {status}; task logs:\n{logs}");

        var latest = Latest(manifest);
        Assert.Equal(3, latest.Count);
        Assert.All(latest.Values, x => Assert.Equal("done", x.GetProperty("status").GetString()));
        Assert.Equal([0, 1, 2], latest.Values.Select(x => x.GetProperty("task").GetInt32()).Order());
        foreach (var n in new[] { "a", "b", "c" })
            Assert.Equal(Tool.CountFrames(Path.Combine(inDir, n + ".mp4")), Tool.CountFrames(Path.Combine(outDir, n + ".mp4")));
        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json"))))
            Assert.Equal(3, summary.RootElement.GetProperty("totals").GetProperty("done").GetInt32());
        Assert.Empty(TempFiles(outDir));

        // Resubmission after deleting one output: only that clip runs.
        File.Delete(Path.Combine(outDir, "b.mp4"));
        var kept = new[] { "a", "c" }.ToDictionary(n => n, n => File.GetLastWriteTimeUtc(Path.Combine(outDir, n + ".mp4")));
        var linesBefore = ClipLines(manifest).Count;
        r = RunDeid(cluster.Env, "batch", inDir, "-o", outDir, "--slurm", "--submit", "--cpus", "1");
        Assert.True(r.Code == 0, r.StdOut + r.StdErr);
        Assert.Contains("1 clip(s) in 1 array task(s)", r.StdOut);
        Assert.Equal(0, WaitForBatch(cluster, outDir, TimeSpan.FromMinutes(3)));
        var added = ClipLines(manifest).Skip(linesBefore).ToList();
        Assert.Equal(["queued", "running", "done"], added.Select(x => x.GetProperty("status").GetString()));
        Assert.All(added, x => Assert.Equal(Path.Combine(inDir, "b.mp4"), x.GetProperty("input").GetString()));
        Assert.True(File.Exists(Path.Combine(outDir, "b.mp4")));
        foreach (var (n, t) in kept) Assert.Equal(t, File.GetLastWriteTimeUtc(Path.Combine(outDir, n + ".mp4")));

        // Nothing left: a third submission submits nothing.
        r = RunDeid(cluster.Env, "batch", inDir, "-o", outDir, "--slurm", "--submit");
        Assert.True(r.Code == 0, r.StdErr);
        Assert.Contains("nothing to submit", r.StdOut);

        // Slurm refusing a job: its own message, one line.
        File.Delete(Path.Combine(outDir, "c.mp4"));
        AssertOneError(RunDeid(cluster.Env, "batch", inDir, "-o", outDir, "--slurm", "--submit", "--partition", "no-such-partition"), 1, "Slurm refused the job: invalid partition");
    }
}
