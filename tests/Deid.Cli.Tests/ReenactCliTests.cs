using System.Text.Json;
using Deid.TestSupport;

namespace Deid.Cli.Tests;

/// <summary>`deid reenact` run as a user runs it: bad input gives one line and leaves nothing; a run evaluates with `deid evaluate`.</summary>
public sealed class ReenactCliTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private static readonly Lazy<(string Clip, string Still)> Inputs = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("deid-cli-reenact-").FullName;
        var clip = Path.Combine(dir, "driving.mp4");
        var still = Path.Combine(dir, "still.png");
        Tool.Ffmpeg("-i", TestPaths.Video("talk_small.mp4"), "-t", "0.24", "-c:v", "libx264", "-crf", "20", "-preset", "veryfast", "-c:a", "aac", clip);
        Tool.Ffmpeg("-i", TestPaths.Identity("photo_s1.jpg"), "-vf", "scale=256:256", still);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        return (clip, still);
    });

    public void Dispose() => _tmp.Dispose();

    private static (int Code, string StdOut, string StdErr) Deid(params string[] args) =>
        RunDeid(new Dictionary<string, string> { ["DEID_MODELS"] = TestPaths.Models }, args);

    private void AssertFailsCleanly((int Code, string StdOut, string StdErr) r, string output, params string[] expected) =>
        DeidCli.AssertFailsCleanly(r, _tmp.Path, output, expected);

    [Fact]
    public void Help_ListsTheOptions()
    {
        var r = Deid("reenact", "--help");
        Assert.Equal(0, r.Code);
        foreach (var opt in new[] { "--identity", "--driving", "--output", "--crop", "--size", "--report", "--device", "--random-weights", "--driving-track", "--weights-dir" })
            Assert.Contains(opt, r.StdOut);
    }

    [Fact]
    public void BadInput_OneLineNothingLeft()
    {
        var (clip, still) = Inputs.Value;
        var output = _tmp.File("out.mp4");
        var text = _tmp.File("notes.txt");
        File.WriteAllText(text, "not a picture, not a video");
        var textJpg = _tmp.File("photo.jpg");
        File.WriteAllText(textJpg, "not a picture");
        var noFace = _tmp.File("noface.png");
        Tool.Ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:duration=1", "-frames:v", "1", noFace);
        var audioOnly = _tmp.File("sound.m4a");
        Tool.Ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", audioOnly);

        AssertFailsCleanly(Deid("reenact", "--identity", _tmp.File("missing.jpg"), "--driving", clip, "-o", output), output, "not found");
        AssertFailsCleanly(Deid("reenact", "--identity", textJpg, "--driving", clip, "-o", output), output, "not a readable image");
        AssertFailsCleanly(Deid("reenact", "--identity", noFace, "--driving", clip, "-o", output), output, "no face");
        AssertFailsCleanly(Deid("reenact", "--identity", still, "--driving", _tmp.File("missing.mp4"), "-o", output), output, "not found");
        AssertFailsCleanly(Deid("reenact", "--identity", still, "--driving", text, "-o", output), output, "not a readable video");
        AssertFailsCleanly(Deid("reenact", "--identity", still, "--driving", audioOnly, "-o", output), output, "audio-only");
        AssertFailsCleanly(Deid("reenact", "--identity", still, "--driving", clip, "-o", output, "--size", "641x480"), output, "even");
        AssertFailsCleanly(Deid("reenact", "--identity", still, "--driving", clip, "-o", output, "--size", "big"), output, "WIDTHxHEIGHT");
        AssertFailsCleanly(Deid("reenact", "--identity", still, "--driving", clip, "-o", output, "--crop", "--size", "320x240"), output, "--crop");
        AssertFailsCleanly(Deid("reenact", "--identity", still, "--driving", clip, "-o", clip), clip + ".none", "input file itself");
        // No trained weights in the test store: every missing file is named, with how to get it, before any frame is decoded.
        if (!File.Exists(Path.Combine(TestPaths.Models, "latent", "M.safetensors")))
            AssertFailsCleanly(Deid("reenact", "--identity", still, "--driving", clip, "-o", output), output, "needs weights that are missing");
    }

    [Fact]
    public void Reenact_RunsEndToEnd_AndEvaluateReadsTheOutput()
    {
        var (clip, still) = Inputs.Value;
        var output = _tmp.File("out.mp4");
        var report = _tmp.File("report.json");
        var r = Deid("reenact", "--identity", still, "--driving", clip, "-o", output, "--report", report, "--random-weights", "--random-size", "small", "--workers", "2");
        Assert.True(r.Code == 0, r.StdErr);
        Assert.Contains("reenacted", r.StdOut);
        Assert.Equal(Tool.CountFrames(clip), Tool.CountFrames(output));
        using (var doc = JsonDocument.Parse(File.ReadAllText(report)))
        {
            var totals = doc.RootElement.GetProperty("totals");
            Assert.Equal(Tool.CountFrames(clip), totals.GetProperty("frames").GetInt32());
            Assert.True(totals.GetProperty("generated").GetInt32() > 0);
            Assert.Equal("reenact", doc.RootElement.GetProperty("kind").GetString());
        }

        var dir = _tmp.File("eval");
        var e = Deid("evaluate", "--source", clip, "--output", output, "--target", still, "-o", dir);
        Assert.True(e.Code == 0, e.StdErr);
        using var eval = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "report.json")));
        Assert.True(eval.RootElement.GetProperty("frames").GetArrayLength() > 0);
    }
}
