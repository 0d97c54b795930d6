using System.Diagnostics;
using System.Text.Json;
using Deid.Cli.Batch;
using Deid.Pipeline;
using Deid.TestSupport;
using static Deid.Cli.Tests.BatchTestSupport;

namespace Deid.Cli.Tests;

/// <summary>`deid batch` run locally as a process (exit codes, manifest, summary), plus the engine-reuse check in process.</summary>
public sealed class BatchCliTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private const int SIGINT = 2;
    [System.Runtime.InteropServices.DllImport("libc.so.6", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    /// <summary>in/a.mp4, in/sub/b.mp4, in/sub/c.dat (a video without a video extension), corrupt, audio-only and a text file.</summary>
    private string MakeInputs(bool bad = true, Func<string, string>? clip = null)
    {
        clip ??= Clip;
        var inDir = Directory.CreateDirectory(_tmp.File("in")).FullName;
        Directory.CreateDirectory(Path.Combine(inDir, "sub"));
        File.Copy(clip("a"), Path.Combine(inDir, "a.mp4"));
        File.Copy(clip("b"), Path.Combine(inDir, "sub", "b.mp4"));
        File.Copy(clip("c"), Path.Combine(inDir, "sub", "c.dat"));
        if (bad)
        {
            var bytes = File.ReadAllBytes(Clip("a"));
            File.WriteAllBytes(Path.Combine(inDir, "corrupt.mp4"), bytes[..(bytes.Length / 3)]);
            Tool.Ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", Path.Combine(inDir, "sub", "sound.m4a"));
            File.WriteAllText(Path.Combine(inDir, "notes.txt"), "not a clip\n");
        }
        return inDir;
    }

    private static Dictionary<string, DateTime> Mtimes(string dir) =>
        Directory.GetFiles(dir, "*.mp4", SearchOption.AllDirectories).ToDictionary(f => f, File.GetLastWriteTimeUtc);

    [Fact]
    public void LocalBatch_GoodDoneBadRecorded_RerunDoesNothing_DeletedOutputAloneRedone()
    {
        var inDir = MakeInputs();
        var outDir = _tmp.File("out");
        var inputBytes = Directory.GetFiles(inDir, "*", SearchOption.AllDirectories).ToDictionary(f => f, File.ReadAllBytes);

        var r = RunDeid("batch", inDir, "-o", outDir, "--jobs", "2", "--retry", "0");
        Assert.True(r.Code == BatchExit.SomeFailed, $"exit {r.Code}: {r.StdOut}\n{r.StdErr}");
        var manifest = Path.Combine(outDir, "manifest.jsonl");
        var latest = Latest(manifest);
        Assert.Equal(5, latest.Count); // notes.txt is not media: skipped
        foreach (var (input, rel) in new[] { ("a.mp4", "a.mp4"), ("sub/b.mp4", "sub/b.mp4"), ("sub/c.dat", "sub/c.mp4") })
        {
            var rec = latest[Path.Combine(inDir, input)];
            Assert.Equal("done", rec.GetProperty("status").GetString());
            var output = Path.Combine(outDir, rel);
            Assert.Equal(output, rec.GetProperty("output").GetString());
            Assert.Equal(Tool.CountFrames(Path.Combine(inDir, input)), Tool.CountFrames(output));
            using var report = JsonDocument.Parse(File.ReadAllText(output + ".report.json"));
            Assert.Equal(rec.GetProperty("faces").GetInt32(), report.RootElement.GetProperty("totals").GetProperty("faces").GetInt32());
            if (input == "a.mp4") Assert.True(rec.GetProperty("faces").GetInt32() > 0);
        }
        var corrupt = latest[Path.Combine(inDir, "corrupt.mp4")];
        Assert.Equal("failed", corrupt.GetProperty("status").GetString());
        Assert.Contains("truncated", corrupt.GetProperty("error").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.Contains("audio-only", latest[Path.Combine(inDir, "sub", "sound.m4a")].GetProperty("error").GetString());
        Assert.False(File.Exists(Path.Combine(outDir, "corrupt.mp4")));
        Assert.Empty(TempFiles(outDir));
        Assert.Contains("failed: " + Path.Combine(inDir, "corrupt.mp4"), r.StdOut);

        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json"))))
        {
            var t = summary.RootElement.GetProperty("totals");
            Assert.Equal(5, t.GetProperty("clips").GetInt32());
            Assert.Equal(3, t.GetProperty("done").GetInt32());
            Assert.Equal(2, t.GetProperty("failed").GetInt32());
            Assert.True(t.GetProperty("frames").GetInt32() > 0);
            Assert.Equal(5, summary.RootElement.GetProperty("clips").GetArrayLength());
        }
        var html = File.ReadAllText(Path.Combine(outDir, "summary.html"));
        Assert.Contains("sub/c.mp4", html);
        Assert.Contains("audio-only", html);

        // Rerun: nothing is redone (the failed clips used their tries), not even re-probed into new lines.
        var lines = File.ReadAllLines(manifest).Length;
        var before = Mtimes(outDir);
        r = RunDeid("batch", inDir, "-o", outDir, "--jobs", "2", "--retry", "0");
        Assert.Equal(BatchExit.SomeFailed, r.Code);
        Assert.Equal(lines, File.ReadAllLines(manifest).Length);
        Assert.Equal(before, Mtimes(outDir));
        Assert.Contains("0 to do, 3 already done", r.StdOut);

        // Delete one output: only that clip is redone.
        File.Delete(Path.Combine(outDir, "sub", "b.mp4"));
        r = RunDeid("batch", inDir, "-o", outDir, "--retry", "0");
        Assert.Equal(BatchExit.SomeFailed, r.Code);
        var added = ClipLines(manifest).Skip(ClipLines(manifest).Count - 2).ToList();
        Assert.Equal(2, ClipLines(manifest).Count - (lines - 1));
        Assert.All(added, x => Assert.Equal(Path.Combine(inDir, "sub", "b.mp4"), x.GetProperty("input").GetString()));
        Assert.Equal(["running", "done"], added.Select(x => x.GetProperty("status").GetString()));
        var after = Mtimes(outDir);
        Assert.Equal(before[Path.Combine(outDir, "a.mp4")], after[Path.Combine(outDir, "a.mp4")]);
        Assert.Equal(before[Path.Combine(outDir, "sub", "c.mp4")], after[Path.Combine(outDir, "sub", "c.mp4")]);
        Assert.True(File.Exists(Path.Combine(outDir, "sub", "b.mp4")));

        // Inputs are never modified.
        foreach (var (f, bytes) in inputBytes) Assert.Equal(bytes, File.ReadAllBytes(f));
    }

    [Fact]
    public void CtrlC_MidBatch_LeavesNoPartialOutput_AndTheRerunContinues()
    {
        var inDir = MakeInputs(bad: false, LongClip);
        var outDir = _tmp.File("out");
        var manifest = Path.Combine(outDir, "manifest.jsonl");
        using (var p = Process.Start(StartInfo(["batch", inDir, "-o", outDir, "--jobs", "1"], defaultSigint: true))!)
        {
            var err = p.StandardError.ReadToEndAsync();
            var stdout = p.StandardOutput.ReadToEndAsync();
            // Interrupt once the first clip is done and the second has started.
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromMinutes(3) && !p.HasExited)
            {
                if (File.Exists(manifest) && File.ReadAllText(manifest).Split("\"status\":\"running\"").Length - 1 >= 2) break;
                Thread.Sleep(50);
            }
            Thread.Sleep(500); // into the second clip's frames
            // (the message must not touch stdout.Result before the process ends: that waits for it)
            if (p.HasExited) Assert.Fail("the batch ended before it could be interrupted: " + stdout.Result + err.Result);
            Assert.Equal(0, kill(p.Id, SIGINT));
            Assert.True(p.WaitForExit(60_000), "the batch did not stop within 60 s of SIGINT");
            Assert.True(p.ExitCode == BatchExit.Cancelled, $"exit {p.ExitCode}: {stdout.Result}\n{err.Result}");
        }
        Assert.Empty(TempFiles(outDir));
        var latest = Latest(manifest);
        Assert.Contains(latest.Values, x => x.GetProperty("status").GetString() == "interrupted");
        // Every video in OUT_DIR is a complete one the manifest records as done.
        foreach (var f in Directory.GetFiles(outDir, "*.mp4", SearchOption.AllDirectories))
        {
            var rec = latest.Values.Single(x => x.GetProperty("output").GetString() == f);
            Assert.Equal("done", rec.GetProperty("status").GetString());
            Assert.Equal(rec.GetProperty("frames").GetInt32(), Tool.CountFrames(f));
        }
        var doneBefore = latest.Values.Where(x => x.GetProperty("status").GetString() == "done").Select(x => x.GetProperty("input").GetString()).ToList();
        Assert.NotEmpty(doneBefore);

        var r = RunDeid("batch", inDir, "-o", outDir, "--jobs", "1");
        Assert.True(r.Code == 0, r.StdOut + r.StdErr);
        Assert.Contains($"{3 - doneBefore.Count} to do, {doneBefore.Count} already done", r.StdOut);
        Assert.All(Latest(manifest).Values, x => Assert.Equal("done", x.GetProperty("status").GetString()));
        Assert.Equal(3, Directory.GetFiles(outDir, "*.mp4", SearchOption.AllDirectories).Length);
    }

    [Fact]
    public async Task ModelsAreLoadedOncePerProcess()
    {
        var inDir = MakeInputs(bad: false);
        var outDir = _tmp.File("out");
        Directory.CreateDirectory(outDir);
        var ssd = TestPaths.MissingFaceApiWeights("ssd_mobilenetv1_model-weights_manifest.json") is null;
        var options = new AnonymizeOptions { Detector = ssd ? DetectorKind.Ssd : DetectorKind.Hog };
        var clips = BatchInputs.Discover([inDir], outDir).Clips;
        Assert.Equal(3, clips.Count);
        var manifest = new BatchManifest(Path.Combine(outDir, "manifest.jsonl"));
        using var engine = new DeidEngine("cpu");
        var runner = new BatchRunner(engine, manifest, options, new BatchRunSettings { Jobs = 2 });

        var first = await runner.RunAsync(BatchPlanner.Decide(clips.Take(1), manifest.Load(), 1, false), TestContext.Current.CancellationToken);
        Assert.True(first.Done == 1, string.Join("\n", File.ReadAllLines(manifest.Path)));
        var loadsAfterOne = engine.Loads;
        Assert.Equal(ssd ? 2 : 1, loadsAfterOne); // dlib's shape predictor (+ the SSD detector)
        var rest = await runner.RunAsync(BatchPlanner.Decide(clips.Skip(1), manifest.Load(), 1, false), TestContext.Current.CancellationToken);
        Assert.Equal(2, rest.Done);
        Assert.Equal(loadsAfterOne, engine.Loads);
    }

    // ---------------- bad input: one line, exit code 1 ----------------

    [Fact]
    public void NoInputsFound()
    {
        Directory.CreateDirectory(_tmp.File("empty"));
        File.WriteAllText(_tmp.File("empty/readme.txt"), "hello\n");
        AssertOneError(RunDeid("batch", _tmp.File("empty"), "-o", _tmp.File("out")), 1, "no inputs found");
        Assert.False(Directory.Exists(_tmp.File("out")));
    }

    [Fact]
    public void OutDirInsideTheInputFolder()
    {
        var inDir = MakeInputs(bad: false);
        AssertOneError(RunDeid("batch", inDir, "-o", Path.Combine(inDir, "anon")), 1, "would be taken as inputs");
        AssertOneError(RunDeid("batch", inDir + "/**/*.mp4", "-o", Path.Combine(inDir, "anon")), 1, "would be taken as inputs");
        Assert.False(Directory.Exists(Path.Combine(inDir, "anon")));
    }

    [Fact]
    public void TwoInputsOnOneOutputPath()
    {
        var inDir = MakeInputs(bad: false);
        File.Copy(Clip("a"), Path.Combine(inDir, "a.avi")); // → a.mp4, like a.mp4
        AssertOneError(RunDeid("batch", inDir, "-o", _tmp.File("out")), 1, "same output a.mp4");
    }

    [Fact]
    public void ManifestOfAnotherOutDir_OrOtherOptions()
    {
        var inDir = MakeInputs(bad: false);
        var outDir = _tmp.File("out");
        // --slurm --print writes the manifest header and plan without processing anything.
        var r = RunDeid("batch", inDir, "-o", outDir, "--slurm", "--print", "--mode", "pixelate", "--detector", "both");
        Assert.True(r.Code == 0, r.StdErr);
        AssertOneError(RunDeid("batch", inDir, "-o", _tmp.File("other"), "--manifest", Path.Combine(outDir, "manifest.jsonl"), "--mode", "pixelate", "--detector", "both"),
            1, $"belongs to OUT_DIR {outDir}");
        r = RunDeid("batch", inDir, "-o", outDir, "--mode", "blur", "--detector", "both");
        AssertOneError(r, 1, "made with other options");
        Assert.Contains("mode: \"pixelate\" in the manifest, \"blur\" now", r.StdErr);
        Assert.DoesNotContain("detector", r.StdErr);
        // Execution-only options may differ.
        r = RunDeid("batch", inDir, "-o", outDir, "--slurm", "--print", "--mode", "pixelate", "--detector", "both", "--workers", "1", "--batch-size", "2");
        Assert.True(r.Code == 0, r.StdErr);
    }

    [Fact]
    public void SubmitWithoutSbatchOnPath()
    {
        var inDir = MakeInputs(bad: false);
        var r = RunDeid(new Dictionary<string, string> { ["PATH"] = _tmp.File("nothing-here") }, "batch", inDir, "-o", _tmp.File("out"), "--slurm", "--submit");
        AssertOneError(r, 1, "sbatch, which is not on PATH");
        Assert.False(Directory.Exists(_tmp.File("out")));
    }

    [Fact]
    public void SlurmRefusingTheJob_ShowsItsMessage()
    {
        var inDir = MakeInputs(bad: false);
        var bin = Directory.CreateDirectory(_tmp.File("bin")).FullName;
        File.WriteAllText(Path.Combine(bin, "sbatch"), "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified' >&2\nexit 1\n");
        File.SetUnixFileMode(Path.Combine(bin, "sbatch"), UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.UserWrite);
        var r = RunDeid(new Dictionary<string, string> { ["PATH"] = bin + ":" + Environment.GetEnvironmentVariable("PATH") }, "batch", inDir, "-o", _tmp.File("out"), "--slurm", "--submit");
        AssertOneError(r, 1, "Slurm refused the job: Batch job submission failed: Invalid account or account/partition combination specified");
    }

    [Fact]
    public void SlurmPrint_WritesAJobArrayScript()
    {
        var inDir = MakeInputs(bad: false);
        var outDir = _tmp.File("out");
        var r = RunDeid("batch", inDir, "-o", outDir, "--slurm", "--print", "--partition", "gpu", "--time", "01:30:00", "--cpus", "4", "--gpus", "1", "--array-max", "2", "--clips-per-task", "2");
        Assert.True(r.Code == 0, r.StdErr);
        var s = r.StdOut;
        Assert.StartsWith("#!/bin/bash\n", s);
        foreach (var line in new[] { "#SBATCH --array=0-1%2", "#SBATCH --cpus-per-task=4", "#SBATCH --gres=gpu:1", "#SBATCH --partition=gpu", "#SBATCH --time=01:30:00" })
            Assert.Contains(line, s);
        Assert.Contains("--task-index \"$SLURM_ARRAY_TASK_ID\"", s);
        Assert.Contains("--device cuda", s);
        var plan = Manifest(Path.Combine(outDir, "manifest.jsonl")).Single(x => x.GetProperty("type").GetString() == "plan");
        Assert.Equal([2, 1], plan.GetProperty("tasks").EnumerateArray().Select(t => t.GetArrayLength()));
        Assert.Equal(s, File.ReadAllText(plan.GetProperty("script").GetString()!));
        Assert.Equal(0, Tool.Run("bash", "-n", plan.GetProperty("script").GetString()!).Code);
    }
}
