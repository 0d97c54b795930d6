using System.Text.Json;
using Deid.TestSupport;

namespace Deid.Cli.Tests;

/// <summary>`deid anonymize --mode latent` as a user runs it: small random networks, a short real clip.</summary>
public sealed class LatentCliTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private static readonly Lazy<string> Clip = new(() =>
    {
        var path = Path.Combine(Path.GetTempPath(), $"deid-latent-clip-{Environment.ProcessId}.mp4");
        Tool.Ffmpeg("-i", TestPaths.Video("talk_d3.mp4"), "-t", "0.5", "-vf", "scale=384:384", "-c:v", "libx264", "-crf", "20", "-preset", "veryfast", "-c:a", "aac", path);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { File.Delete(path); } catch (IOException) { } };
        return path;
    });

    public void Dispose() => _tmp.Dispose();


    private string[] Latent(params string[] more) =>
        ["anonymize", Clip.Value, "-o", _tmp.File("out.mp4"), "--mode", "latent", "--random-weights", "--random-size", "small", "--workers", "2", .. more];

    private void AssertFailsCleanly((int Code, string StdOut, string StdErr) r, string expected) =>
        DeidCli.AssertFailsCleanly(r, _tmp.Path, null, expected);

    [Fact]
    public void Help_ListsTheLatentOptions()
    {
        var r = RunDeid("anonymize", "--help");
        foreach (var opt in new[] { "latent", "--identity", "--track", "--truncation", "--identity-margin", "--w-smoothing", "--weights-dir", "--random-weights", "--batch" })
            Assert.Contains(opt, r.StdOut);
    }

    [Theory]
    [InlineData("--track=2", "is not ID=PHOTO")]
    [InlineData("--track=x=seed:1", "is not ID=PHOTO")]
    [InlineData("--identity=seed:x", "not a valid identity seed")]
    [InlineData("--identity=/nonexistent/someone.jpg", "identity photo not found")]
    [InlineData("--w-smoothing=maybe", "on or off")]
    [InlineData("--truncation=0", "truncation")]
    public void BadLatentArguments_OneLine(string arg, string expected) => AssertFailsCleanly(RunDeid(Latent(arg)), expected);

    [Fact]
    public void LatentOptionsWithoutLatentMode_AreRefused() =>
        AssertFailsCleanly(RunDeid("anonymize", Clip.Value, "-o", _tmp.File("out.mp4"), "--identity", "seed:3"), "--mode latent");

    [Fact]
    public void MissingWeights_ListEachFileAndTheFix()
    {
        var models = Directory.CreateDirectory(_tmp.File("models")).FullName;
        var r = RunDeid(new Dictionary<string, string> { ["DEID_MODELS"] = models }, "anonymize", Clip.Value, "-o", _tmp.File("out.mp4"), "--mode", "latent");
        AssertFailsCleanly(r, "latent mode needs weights that are missing");
        foreach (var part in new[] { "G (", "E_id (", "E_attr (", "M (", "deid models import", "--random-weights" }) Assert.Contains(part, r.StdErr);
    }

    [Fact]
    public void Cuda_WhereThereIsNone_IsOneLine()
    {
        Assert.SkipWhen(global::Deid.Models.DeviceSelection.CudaAvailable(), AnonymizeCliTests.CudaPresentReason);
        AssertFailsCleanly(RunDeid(Latent("--device", "cuda")), "CUDA");
    }

    [Fact]
    public void Latent_RunsEndToEnd_ReportsTheAudit_AndEvaluatesUnchanged()
    {
        var report = _tmp.File("r.json");
        var r = RunDeid(Latent("--report", report, "--identity", "seed:11"));
        Assert.True(r.Code == 0, r.StdErr);
        Assert.Contains("audit:", r.StdOut);
        Assert.Contains("RANDOM WEIGHTS", r.StdErr);
        Assert.Equal(Tool.CountFrames(Clip.Value), Tool.CountFrames(_tmp.File("out.mp4")));
        using (var doc = JsonDocument.Parse(File.ReadAllText(report)))
        {
            var root = doc.RootElement;
            Assert.Equal("latent", root.GetProperty("mode").GetString());
            Assert.Equal(4, root.GetProperty("randomWeights").GetArrayLength());
            Assert.Equal(11, root.GetProperty("identities")[0].GetProperty("seed").GetInt32());
            var audit = root.GetProperty("audit");
            Assert.True(audit.GetProperty("enabled").GetBoolean());
            Assert.True(audit.GetProperty("facesAudited").GetInt32() > 0);
            foreach (var frame in root.GetProperty("frames").EnumerateArray())
                foreach (var face in frame.GetProperty("faces").EnumerateArray())
                    if (face.GetProperty("handling").GetString() != "fallback-blurred")
                        Assert.True(face.TryGetProperty("audit", out var a) && a.TryGetProperty("similarityToSource", out _));
        }

        var eval = RunDeid("evaluate", "--source", Clip.Value, "--output", _tmp.File("out.mp4"), "--target", "seed:11", "-o", _tmp.File("eval"));
        Assert.True(eval.Code == 0, eval.StdErr);
        Assert.True(File.Exists(Path.Combine(_tmp.File("eval"), "report.json")));
    }
}
