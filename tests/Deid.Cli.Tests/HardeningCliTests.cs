using System.Diagnostics;
using Deid.Media;
using Deid.TestSupport;

namespace Deid.Cli.Tests;

/// <summary>Issue 12 through the real `deid anonymize` process: output lock, killed runs, subtitles, WebM, tampered weights.</summary>
public sealed class HardeningCliTests : IDisposable
{
    private readonly TempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    private static ProcessStartInfo Psi(IEnumerable<string> args, string? models = null) =>
        StartInfo(args, models == null ? null : new Dictionary<string, string> { ["DEID_MODELS"] = models });

    private static (int Code, string StdOut, string StdErr) Deid(string[] args, string? models = null) =>
        RunDeid(models == null ? null : new Dictionary<string, string> { ["DEID_MODELS"] = models }, args);

    private string Clip(double seconds, string scale = "128:128", string audio = "copy", string name = "clip.mp4")
    {
        var path = _tmp.File(name);
        Tool.Ffmpeg("-i", Shared("talk_small.mp4"), "-t", seconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "-vf", "scale=" + scale,
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", audio, path);
        return path;
    }

    private static string Shared(string name)
    {
        var p = TestPaths.Video(name);
        if (!File.Exists(p)) Assert.Skip($"shared clip missing: {p}");
        return p;
    }

    private static string OneErrorLine((int Code, string StdOut, string StdErr) r) => DeidCli.OneErrorLine(r, code: 1);

    private static string Streams(string path, string type) => string.Join(",",
        Tool.Probe(path).RootElement.GetProperty("streams").EnumerateArray()
            .Where(s => s.GetProperty("codec_type").GetString() == type).Select(s => s.GetProperty("codec_name").GetString()));

    private string[] Leftovers(string dir, params string[] expected) =>
        Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Where(n => !expected.Contains(n)).Select(n => n!).ToArray();

    [Fact]
    public void Help_ListsTheNewOptions()
    {
        var r = Deid(["anonymize", "--help"]);
        Assert.Equal(0, r.Code);
        Assert.Contains("--drop-subtitles", r.StdOut);
        Assert.Contains("--audio-transcode", r.StdOut);
    }

    [Fact]
    public void OutputHeldByAnotherProcess_IsAOneLineError_AndTheOutputIsUntouched()
    {
        var clip = Clip(0.3);
        var outDir = Directory.CreateDirectory(_tmp.File("out")).FullName;
        var output = Path.Combine(outDir, "out.mp4");
        File.WriteAllText(output, "the other run's result");
        using (OutputLock.Acquire(output))
        {
            var line = OneErrorLine(Deid(["anonymize", clip, "-o", output]));
            Assert.Contains("another deid run is already writing", line);
            Assert.Equal("the other run's result", File.ReadAllText(output));
        }
        Assert.Equal(["out.mp4"], Leftovers(outDir));
    }

    [Fact]
    public void TwoRunsAtOnce_OneWinsAtATime_AndTheOutputIsWhole()
    {
        var clip = Clip(1.0);
        var outDir = Directory.CreateDirectory(_tmp.File("out")).FullName;
        var output = Path.Combine(outDir, "out.mp4");
        var args = new[] { "anonymize", clip, "-o", output, "--workers", "1" };
        using var a = Process.Start(Psi(args))!;
        using var b = Process.Start(Psi(args))!;
        var ea = a.StandardError.ReadToEndAsync();
        var eb = b.StandardError.ReadToEndAsync();
        a.StandardOutput.ReadToEnd();
        b.StandardOutput.ReadToEnd();
        a.WaitForExit();
        b.WaitForExit();
        var results = new[] { (a.ExitCode, ea.Result), (b.ExitCode, eb.Result) };
        Assert.Contains(results, x => x.ExitCode == 0);
        foreach (var (code, err) in results.Where(x => x.ExitCode != 0))
        {
            Assert.Equal(1, code);
            Assert.Contains("another deid run is already writing", Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        }
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(output));
        Assert.Equal(0, Tool.Run("ffmpeg", "-v", "error", "-xerror", "-i", output, "-f", "null", "-").Code);
        Assert.Equal(["out.mp4"], Leftovers(outDir));
    }

    [Fact]
    public void KilledRun_LeavesATempFile_ThatTheNextRunForTheTargetRemoves()
    {
        var longClip = Clip(6, scale: "256:256", name: "long.mp4");
        var outDir = Directory.CreateDirectory(_tmp.File("out")).FullName;
        var output = Path.Combine(outDir, "out.mp4");
        using (var p = Process.Start(Psi(["anonymize", longClip, "-o", output, "--workers", "1"]))!)
        {
            _ = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
            _ = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
            var sw = Stopwatch.StartNew();
            while (!Directory.EnumerateFiles(outDir, ".out.mp4.deid-tmp-*").Any() && !p.HasExited && sw.Elapsed < TimeSpan.FromMinutes(3)) Thread.Sleep(50);
            Assert.False(p.HasExited, "the run ended before it could be killed");
            Assert.Contains($".out.mp4.deid-tmp-{p.Id}-", Path.GetFileName(Directory.EnumerateFiles(outDir, ".out.mp4.deid-tmp-*").First()));
            p.Kill(entireProcessTree: false);
            p.WaitForExit();
        }
        // the killed run's ffmpeg sees its input end and finishes the temp file on its own: wait until no one has it open
        var stale = Directory.EnumerateFiles(outDir, ".out.mp4.deid-tmp-*").ToList();
        Assert.NotEmpty(stale);
        WaitUntilNoProcessUses(stale[0]);
        Assert.False(File.Exists(output));

        var r = Deid(["anonymize", Clip(0.3, name: "short.mp4"), "-o", output]);
        Assert.Equal(0, r.Code);
        Assert.Equal(["out.mp4"], Leftovers(outDir));
    }

    private static void WaitUntilNoProcessUses(string file)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromMinutes(2))
        {
            var busy = false;
            foreach (var dir in Directory.EnumerateDirectories("/proc").Where(d => int.TryParse(Path.GetFileName(d), out _)))
            {
                try
                {
                    if (File.ReadAllText(Path.Combine(dir, "cmdline")).Contains(file, StringComparison.Ordinal)) { busy = true; break; }
                }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
            if (!busy) return;
            Thread.Sleep(100);
        }
    }

    [Fact]
    public void Subtitles_CopiedIntoMkv_DroppedOnRequest_AndAttachmentsIntoMp4AreAWarning()
    {
        if (!File.Exists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")) Assert.Skip("fonts-dejavu-core missing");
        var srt = _tmp.File("s.srt");
        File.WriteAllText(srt, "1\n00:00:00,000 --> 00:00:00,300\nHello\n");
        var clip = _tmp.File("sub.mkv");
        Tool.Ffmpeg("-i", Shared("talk_small.mp4"), "-i", srt, "-t", "0.4", "-map", "0", "-map", "1", "-vf", "scale=128:128",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", "-c:s", "srt",
            "-attach", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "-metadata:s:t", "mimetype=application/x-truetype-font", clip);

        Assert.Equal(0, Deid(["anonymize", clip, "-o", _tmp.File("a.mkv")]).Code);
        Assert.Equal("subrip", Streams(_tmp.File("a.mkv"), "subtitle"));
        Assert.Equal("ttf", Streams(_tmp.File("a.mkv"), "attachment"));

        Assert.Equal(0, Deid(["anonymize", clip, "-o", _tmp.File("b.mkv"), "--drop-subtitles"]).Code);
        Assert.Equal("", Streams(_tmp.File("b.mkv"), "subtitle"));

        var r = Deid(["anonymize", clip, "-o", _tmp.File("c.mp4"), "--report", _tmp.File("c.json")]);
        Assert.Equal(0, r.Code);
        Assert.Equal("mov_text", Streams(_tmp.File("c.mp4"), "subtitle"));
        Assert.Contains(r.StdErr.Split('\n'), l => l.StartsWith("deid: warning: attachment stream", StringComparison.Ordinal) && l.Contains(".mkv"));
    }

    [Fact]
    public void WebM_FromAac_SaysWhyAndHow_AndTranscodesOnRequest()
    {
        var clip = Clip(0.4);
        var line = OneErrorLine(Deid(["anonymize", clip, "-o", _tmp.File("o.webm")]));
        Assert.Contains("Opus or Vorbis", line);
        Assert.Contains(".mkv", line);
        Assert.Contains("--audio-transcode opus", line);
        Assert.False(File.Exists(_tmp.File("o.webm")));

        Assert.Equal(0, Deid(["anonymize", clip, "-o", _tmp.File("o.webm"), "--audio-transcode", "opus"]).Code);
        Assert.Equal("vp9", Streams(_tmp.File("o.webm"), "video"));
        Assert.Equal("opus", Streams(_tmp.File("o.webm"), "audio"));
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(_tmp.File("o.webm")));

        Assert.Contains("--audio-transcode", OneErrorLine(Deid(["anonymize", clip, "-o", _tmp.File("p.mkv"), "--audio-transcode", "mp3"])));
    }

    [Fact]
    public void TamperedSsdWeights_AreRefused_WithOneLine_AndNoOutput()
    {
        var source = TestPaths.Models;
        if (TestPaths.MissingFaceApiWeights("ssd_mobilenetv1_model-weights_manifest.json") is { } why) Assert.Skip(why);
        if (!File.Exists(Path.Combine(source, "manifest.json"))) Assert.Skip($"no manifest.json in {source}; run `deid models fetch`");
        var models = Directory.CreateDirectory(_tmp.File("models")).FullName;
        Directory.CreateDirectory(Path.Combine(models, "face-api"));
        foreach (var f in new[] { "ssd_mobilenetv1_model-weights_manifest.json", "ssd_mobilenetv1_model.bin" })
            File.Copy(Path.Combine(source, "face-api", f), Path.Combine(models, "face-api", f));
        File.Copy(Path.Combine(source, "manifest.json"), Path.Combine(models, "manifest.json"));
        var dlib = Path.Combine(source, "shape_predictor_68_face_landmarks.dat");
        if (File.Exists(dlib)) File.CreateSymbolicLink(Path.Combine(models, Path.GetFileName(dlib)), new FileInfo(dlib).ResolveLinkTarget(true)?.FullName ?? dlib);
        var clip = Clip(0.3);

        // intact copy: it runs
        Assert.Equal(0, Deid(["anonymize", clip, "-o", _tmp.File("ok.mp4"), "--detector", "ssd"], models).Code);

        var bin = Path.Combine(models, "face-api", "ssd_mobilenetv1_model.bin");
        using (var f = new FileStream(bin, FileMode.Open, FileAccess.ReadWrite))
        {
            var buf = new byte[4096];
            f.Position = 100_000;
            f.ReadExactly(buf);
            for (var i = 0; i < buf.Length; i++) buf[i] ^= 0xFF;
            f.Position = 100_000;
            f.Write(buf);
        }
        var output = _tmp.File("out.mp4");
        var line = OneErrorLine(Deid(["anonymize", clip, "-o", output, "--detector", "ssd"], models));
        Assert.Contains("ssd_mobilenetv1_model.bin", line);
        Assert.Contains("deid models fetch", line);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.EnumerateFiles(_tmp.Path, ".out.mp4*"));
    }
}
