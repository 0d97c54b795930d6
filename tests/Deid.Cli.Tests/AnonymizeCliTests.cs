using System.Text.Json;
using Deid.TestSupport;

namespace Deid.Cli.Tests;

/// <summary>Runs the built deid assembly as a process, exactly as a user would, and checks exit code, message and files.</summary>
public sealed class AnonymizeCliTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private static readonly Lazy<string> SmallClip = new(() =>
    {
        var path = Path.Combine(Path.GetTempPath(), $"deid-cli-clip-{Environment.ProcessId}.mp4");
        Tool.Ffmpeg("-i", TestPaths.Video("talk_small.mp4"), "-t", "0.6", "-c:v", "libx264", "-crf", "20", "-preset", "veryfast", "-c:a", "aac", path);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { File.Delete(path); } catch (IOException) { } };
        return path;
    });

    public void Dispose() => _tmp.Dispose();

    private void AssertFailsCleanly((int Code, string StdOut, string StdErr) r, string output, params string[] expected) =>
        DeidCli.AssertFailsCleanly(r, _tmp.Path, output, expected);

    [Fact]
    public void Help_Works()
    {
        var r = RunDeid("anonymize", "--help");
        Assert.Equal(0, r.Code);
        foreach (var opt in new[] { "--output", "--mode", "--report", "--workers", "--batch-size", "--crop-size", "--max-missing", "--device", "--detector", "--min-confidence" })
            Assert.Contains(opt, r.StdOut);
    }

    [Fact]
    public void SsdDetector_WithoutWeights_SaysToFetchThem()
    {
        // An empty model store: the SSD weights are looked up under $DEID_MODELS/face-api.
        var models = Directory.CreateDirectory(_tmp.File("models")).FullName;
        var r = RunDeid(new Dictionary<string, string> { ["DEID_MODELS"] = models }, "anonymize", SmallClip.Value, "-o", _tmp.File("out.mp4"), "--detector", "ssd");
        AssertFailsCleanly(r, _tmp.File("out.mp4"), "deid models fetch");
    }

    [Fact]
    public void UnknownDetector() =>
        AssertFailsCleanly(RunDeid("anonymize", SmallClip.Value, "-o", _tmp.File("out.mp4"), "--detector", "mtcnn"), _tmp.File("out.mp4"), "unknown detector");

    [Fact]
    public void MinConfidence_OutOfRange() =>
        AssertFailsCleanly(RunDeid("anonymize", SmallClip.Value, "-o", _tmp.File("out.mp4"), "--detector", "ssd", "--min-confidence", "1.5"),
            _tmp.File("out.mp4"), "min confidence must lie strictly between 0 and 1");

    [Fact]
    public void MinConfidence_WithHog_SaysItIsForSsd() =>
        AssertFailsCleanly(RunDeid("anonymize", SmallClip.Value, "-o", _tmp.File("out.mp4"), "--min-confidence", "0.3"),
            _tmp.File("out.mp4"), "--detector ssd or both");

    /// <summary>A command line that does not parse: one line (no help dump, no .NET type names) and exit code 2.</summary>
    [Theory]
    [InlineData("--workers=abc", "'--workers' as a whole number")]
    [InlineData("--min-confidence=abc", "'--min-confidence' as a number")]
    [InlineData("--bogus", "Unrecognized command or argument '--bogus'")]
    public void UnparsableCommandLine_OneLineAndExitCode2(string arg, string expected)
    {
        var r = RunDeid("anonymize", SmallClip.Value, "-o", _tmp.File("out.mp4"), "--detector", "ssd", arg);
        Assert.Equal(2, r.Code);
        AssertFailsCleanly(r, _tmp.File("out.mp4"), expected);
        Assert.Contains("(see `deid anonymize --help`)", r.StdErr);
        Assert.DoesNotContain("System.", r.StdErr);
        Assert.Empty(r.StdOut);
    }

    [Fact]
    public void MissingOutputOption_NamesIt() =>
        AssertFailsCleanly(RunDeid("anonymize", SmallClip.Value), _tmp.File("out.mp4"), "Option '--output' is required");

    [Fact]
    public void MissingInput() =>
        AssertFailsCleanly(RunDeid("anonymize", _tmp.File("nope.mp4"), "-o", _tmp.File("out.mp4")), _tmp.File("out.mp4"), "nope.mp4", "not found", "does not exist", "no such");

    [Fact]
    public void ZeroByteInput()
    {
        var input = _tmp.File("empty.mp4");
        File.WriteAllBytes(input, []);
        AssertFailsCleanly(RunDeid("anonymize", input, "-o", _tmp.File("out.mp4")), _tmp.File("out.mp4"), "empty", "zero", "0 bytes");
    }

    [Fact]
    public void TruncatedInput()
    {
        var input = _tmp.File("cut.mp4");
        var bytes = File.ReadAllBytes(TestPaths.Video("talk_small.mp4"));
        File.WriteAllBytes(input, bytes[..(bytes.Length / 3)]);
        AssertFailsCleanly(RunDeid("anonymize", input, "-o", _tmp.File("out.mp4")), _tmp.File("out.mp4"), "truncated", "corrupt", "not a video", "invalid", "cannot", "could not");
    }

    [Fact]
    public void NotAVideo()
    {
        var input = _tmp.File("text.mp4");
        File.WriteAllText(input, "this is not a video at all\n");
        AssertFailsCleanly(RunDeid("anonymize", input, "-o", _tmp.File("out.mp4")), _tmp.File("out.mp4"), "not a video", "invalid", "corrupt", "unrecognized", "cannot", "could not");
    }

    [Fact]
    public void AudioOnlyInput()
    {
        var input = _tmp.File("sound.m4a");
        Tool.Ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", input);
        AssertFailsCleanly(RunDeid("anonymize", input, "-o", _tmp.File("out.mp4")), _tmp.File("out.mp4"), "audio", "no video");
    }

    [Fact]
    public void UnwritableOutputFolder()
    {
        var output = Path.Combine(_tmp.Path, "no", "such", "dir", "out.mp4");
        AssertFailsCleanly(RunDeid("anonymize", SmallClip.Value, "-o", output), output, "folder", "directory", "writ", "exist");
    }

    [Fact]
    public void OutputEqualsInput()
    {
        var input = _tmp.File("in.mp4");
        File.Copy(SmallClip.Value, input);
        var before = File.ReadAllBytes(input);
        var r = RunDeid("anonymize", input, "-o", input);
        Assert.NotEqual(0, r.Code);
        Assert.StartsWith("deid: error: ", r.StdErr.Trim());
        Assert.Single(r.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(before, File.ReadAllBytes(input));
        Assert.Single(Directory.GetFiles(_tmp.Path));
    }

    [Fact]
    public void UnknownMode() =>
        AssertFailsCleanly(RunDeid("anonymize", SmallClip.Value, "-o", _tmp.File("out.mp4"), "--mode", "smudge"), _tmp.File("out.mp4"), "mode");

    /// <summary>.ci/run allows this skip: it is what a CUDA build on a GPU machine reports.</summary>
    public const string CudaPresentReason = "a CUDA device is usable here: the error for --device cuda without CUDA cannot occur";

    [Fact]
    public void CudaWithoutCuda_IsAClearError()
    {
        Assert.SkipWhen(global::Deid.Models.DeviceSelection.CudaAvailable(), CudaPresentReason);
        var r = RunDeid("anonymize", SmallClip.Value, "-o", _tmp.File("out.mp4"), "--device", "cuda");
        AssertFailsCleanly(r, _tmp.File("out.mp4"), "CUDA");
    }

    [Fact]
    public void Anonymize_WritesOutputSummaryAndReport()
    {
        var output = _tmp.File("out.mp4");
        var report = _tmp.File("r.json");
        var r = RunDeid("anonymize", SmallClip.Value, "-o", output, "--report", report, "--workers", "2", "--batch-size", "4", "--mode", "pixelate");
        Assert.True(r.Code == 0, r.StdErr);
        Assert.True(File.Exists(output));
        Assert.Equal(Tool.CountFrames(SmallClip.Value), Tool.CountFrames(output));
        Assert.Contains("frames", r.StdOut);
        Assert.Single(r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries)); // stdout is not a terminal: one plain summary line
        using var doc = JsonDocument.Parse(File.ReadAllText(report));
        var totals = doc.RootElement.GetProperty("totals");
        Assert.Equal(Tool.CountFrames(SmallClip.Value), totals.GetProperty("frames").GetInt32());
        Assert.True(totals.GetProperty("faces").GetInt32() > 0);
        Assert.Equal("pixelate", doc.RootElement.GetProperty("stage").GetString());
        Assert.Equal("hog", doc.RootElement.GetProperty("detector").GetString());
        Assert.False(doc.RootElement.TryGetProperty("minConfidence", out _));
        Assert.Equal(totals.GetProperty("frames").GetInt32(), doc.RootElement.GetProperty("frames").GetArrayLength());
    }

    [Theory]
    [InlineData("--preset", "fastest", "unknown encoder preset 'fastest'")]
    [InlineData("--crf", "99", "crf must be between 0 and 51")]
    [InlineData("--encoder-threads", "-1", "--encoder-threads must be between 0")]
    public void BadEncoderOption_OneLineNoOutput(string option, string value, string expected) =>
        AssertFailsCleanly(RunDeid("anonymize", SmallClip.Value, "-o", _tmp.File("out.mp4"), option, value), _tmp.File("out.mp4"), expected);

    [Fact]
    public void EncoderOptions_ReachTheEncoder()
    {
        var output = _tmp.File("fast.mp4");
        var r = RunDeid("anonymize", SmallClip.Value, "-o", output, "--mode", "pixelate", "--preset", "ultrafast", "--crf", "30", "--encoder-threads", "1");
        Assert.True(r.Code == 0, r.StdErr);
        Assert.Equal(Tool.CountFrames(SmallClip.Value), Tool.CountFrames(output));
        // x264 records its settings in the stream (an SEI message): the options must be the ones given.
        var sei = System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(output));
        Assert.Contains("crf=30.0", sei);
        Assert.Contains(" threads=1 ", sei);
        Assert.Contains("subme=0", sei); // ultrafast's subpixel refinement (medium's is 7)
    }
}
