using Deid.Models.FaceApi;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using static Deid.Models.Tests.FaceApi.FaceApiTestData;

namespace Deid.Models.Tests.FaceApi;

public class SsdMobilenetv1Tests
{
    /// <summary>
    /// face-api.js's own locateFaces test for faces.jpg (test/tests/ssdMobilenetv1): six boxes (x, y, w, h), its
    /// expectedScores listed in the order of its sortBoxes (distance of the top-left corner to the origin), 5 px
    /// per coordinate and 0.05 score tolerance.
    /// </summary>
    private static readonly (float X, float Y, float W, float H)[] FaceApiBoxes =
        { (48, 253, 104, 129), (260, 227, 76, 117), (466, 165, 88, 130), (234, 36, 84, 119), (577, 65, 84, 105), (84, 14, 79, 132) };
    private static readonly float[] FaceApiScoresBySortBoxes = { 0.54f, 0.81f, 0.97f, 0.88f, 0.84f, 0.61f };

    /// <summary>faces.jpg as [1,3,H,W] RGB 0..255, decoded by ffmpeg (the test project has no JPEG decoder).</summary>
    private static torch.Tensor LoadJpeg(string path)
    {
        var probe = Tool.Probe(path);
        var s = probe.RootElement.GetProperty("streams")[0];
        int w = s.GetProperty("width").GetInt32(), h = s.GetProperty("height").GetInt32();
        var psi = new System.Diagnostics.ProcessStartInfo("ffmpeg") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-hide_banner", "-nostdin", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-" }) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        using var ms = new MemoryStream();
        p.StandardOutput.BaseStream.CopyTo(ms);
        p.WaitForExit();
        Assert.True(p.ExitCode == 0 && ms.Length == (long)w * h * 3, $"ffmpeg could not decode {path}: {err.Result}");
        using var bytes = torch.tensor(ms.ToArray(), new long[] { h, w, 3 }, torch.ScalarType.Byte);
        using var f = bytes.to_type(torch.ScalarType.Float32);
        return f.permute(2, 0, 1).unsqueeze(0).contiguous();
    }

    private static float IoU((float X, float Y, float W, float H) a, SsdFace b)
    {
        var iw = Math.Min(a.X + a.W, b.Right) - Math.Max(a.X, b.X);
        var ih = Math.Min(a.Y + a.H, b.Bottom) - Math.Max(a.Y, b.Y);
        if (iw <= 0 || ih <= 0) return 0;
        return iw * ih / (a.W * a.H + b.Width * b.Height - iw * ih);
    }

    private static List<SsdFace> DetectFaces()
    {
        using var net = SsdMobilenetv1.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        return net.Detect(LoadJpeg(Image("faces.jpg")))[0];
    }

    /// <summary>Pairs each expected box with the detection of highest IoU; each detection is used once.</summary>
    private static (float Box, float Score) MaxDeviation(List<SsdFace> got, (float X, float Y, float W, float H)[] boxes, float[] scores, string what)
    {
        Assert.Equal(boxes.Length, got.Count);
        var used = new HashSet<int>();
        float worstBox = 0, worstScore = 0;
        for (var i = 0; i < boxes.Length; i++)
        {
            var j = Enumerable.Range(0, got.Count).MaxBy(k => IoU(boxes[i], got[k]));
            Assert.True(IoU(boxes[i], got[j]) > 0.5f && used.Add(j), $"{what}: expected box {boxes[i]} has no detection of its own");
            var d = got[j];
            var box = new[] { d.X - boxes[i].X, d.Y - boxes[i].Y, d.Width - boxes[i].W, d.Height - boxes[i].H }.Max(Math.Abs);
            var score = Math.Abs(d.Score - scores[i]);
            Log($"{what}: expected {boxes[i]} score {scores[i]:F3} | ours ({d.X:F2}, {d.Y:F2}, {d.Width:F2}, {d.Height:F2}) score {d.Score:F4} | max |Δ| {box:F2} px, {score:F4}");
            worstBox = Math.Max(worstBox, box); worstScore = Math.Max(worstScore, score);
        }
        Log($"{what}: max deviation {worstBox:F2} px per coordinate, score {worstScore:F4}");
        return (worstBox, worstScore);
    }

    [Fact]
    public void Faces_jpg_matches_face_api_tests_expected_boxes_and_scores()
    {
        RequireWeights(SsdMobilenetv1.ManifestName);
        var got = DetectFaces();
        // face-api's expectedScores follow its sortBoxes order, not the order the boxes are listed in.
        var byDistance = Enumerable.Range(0, FaceApiBoxes.Length)
            .OrderBy(i => FaceApiBoxes[i].X * FaceApiBoxes[i].X + FaceApiBoxes[i].Y * FaceApiBoxes[i].Y).ToArray();
        var scores = new float[FaceApiBoxes.Length];
        for (var r = 0; r < byDistance.Length; r++) scores[byDistance[r]] = FaceApiScoresBySortBoxes[r];
        var (box, score) = MaxDeviation(got, FaceApiBoxes, scores, "face-api test");
        Assert.True(box < 5f, $"box deviation {box:F2} px (face-api's tolerance 5)");
        Assert.True(score < 0.05f, $"score deviation {score:F4} (face-api's tolerance 0.05)");
    }

    /// <summary>
    /// Against face-api.js 1.7.15 itself in headless Chromium (FaceApiReference). The remaining difference is the JPEG
    /// decoder: Chromium's libjpeg-turbo and ffmpeg's decoder differ by a level or two on many pixels (the decoded-RGB
    /// hashes differ), which moves SSD boxes by fractions of a pixel.
    /// </summary>
    [Fact]
    public void Faces_jpg_matches_face_api_in_chromium()
    {
        RequireWeights(SsdMobilenetv1.ManifestName);
        if (!File.Exists(FaceApiReference.Path)) Assert.Skip($"no face-api.js reference at {FaceApiReference.Path}");
        var faces = FaceApiReference.Load().Faces;
        var got = DetectFaces();
        var boxes = faces.Detections.Select(d => ((float)d.Box.X, (float)d.Box.Y, (float)d.Box.Width, (float)d.Box.Height)).ToArray();
        var scores = faces.Detections.Select(d => (float)d.Score).ToArray();
        var (box, score) = MaxDeviation(got, boxes, scores, "face-api.js in Chromium");
        Assert.True(box < 1f, $"box deviation {box:F2} px");
        Assert.True(score < 0.01f, $"score deviation {score:F4}");
    }

    [Fact]
    public void Batch_gives_the_same_faces_as_single_images_and_maps_back_to_each_size()
    {
        RequireWeights(SsdMobilenetv1.ManifestName);
        using var net = SsdMobilenetv1.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        var img = LoadJpeg(Image("faces.jpg"));
        var single = net.Detect(img)[0];
        var batch = net.Detect(torch.cat(new[] { img, img }, 0));
        Assert.Equal(2, batch.Length);
        foreach (var b in batch)
        {
            Assert.Equal(single.Count, b.Count);
            for (var i = 0; i < b.Count; i++)
                Assert.True(Math.Abs(b[i].X - single[i].X) < 0.01f && Math.Abs(b[i].Score - single[i].Score) < 1e-4f);
        }
        // Same picture at twice the size: boxes scale with it (the network input is nearly the same square).
        var big = torch.nn.functional.interpolate(img, scale_factor: new[] { 2.0, 2.0 }, mode: torch.InterpolationMode.Bilinear, align_corners: false);
        var twice = net.Detect(big)[0];
        Assert.Equal(single.Count, twice.Count);
        foreach (var f in single)
        {
            var m = twice.MinBy(t => Math.Abs(t.X - 2 * f.X) + Math.Abs(t.Y - 2 * f.Y));
            Assert.True(Math.Abs(m.X - 2 * f.X) < 6 && Math.Abs(m.Width - 2 * f.Width) < 6, $"{f} vs {m}");
        }
    }

    [Fact]
    public void Blank_image_has_no_faces_and_options_are_validated()
    {
        RequireWeights(SsdMobilenetv1.ManifestName);
        using var net = SsdMobilenetv1.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        Assert.Empty(net.Detect(torch.full(1, 3, 300, 400, 128f))[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => net.Detect(torch.zeros(1, 3, 64, 64), minConfidence: 1f));
        Assert.Throws<ArgumentException>(() => net.forward(torch.zeros(1, 3, 100, 100)));
        Assert.Throws<ArgumentException>(() => net.forward(torch.zeros(1, 3, 544, 512)));
    }

    /// <summary>
    /// The top-left part of a 512² input that holds the picture and a black margin, run alone, finds what the whole
    /// input finds (same faces, boxes within a pixel or two, scores within 0.01) for about its share of the pixels.
    /// </summary>
    [Fact]
    public void A_top_left_part_of_the_input_finds_what_the_whole_input_finds()
    {
        RequireWeights(SsdMobilenetv1.ManifestName);
        using var net = SsdMobilenetv1.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        var img = LoadJpeg(Image("faces.jpg"));
        var input = SsdMobilenetv1.ToNetInput(img);
        var whole = net.DetectInputs(input)[0];
        Assert.Equal(6, whole.Count);
        // faces.jpg is wider than tall: its picture fills the input's width and part of its height.
        var drawn = (int)Math.Round(img.shape[2] * (double)SsdMobilenetv1.InputSize / img.shape[3]);
        var rows = (drawn + 32 + SsdMobilenetv1.PartAlignment - 1) / SsdMobilenetv1.PartAlignment * SsdMobilenetv1.PartAlignment;
        Assert.True(rows < SsdMobilenetv1.InputSize, $"{rows} rows");
        var part = net.DetectInputs(input[.., .., ..rows, ..])[0];
        Assert.Equal(whole.Count, part.Count);
        foreach (var f in whole)
        {
            var m = part.MinBy(p => Math.Abs(p.X - f.X) + Math.Abs(p.Y - f.Y));
            Assert.True(Math.Abs(m.X - f.X) < 2 && Math.Abs(m.Y - f.Y) < 2 && Math.Abs(m.Width - f.Width) < 2 && Math.Abs(m.Height - f.Height) < 2, $"{f} vs {m}");
            Assert.True(Math.Abs(m.Score - f.Score) < 0.01f, $"{f} vs {m}");
        }
        Assert.Equal(Enumerable.Range(0, SsdMobilenetv1.AnchorCount), SsdMobilenetv1.PartAnchorIndices(SsdMobilenetv1.InputSize, SsdMobilenetv1.InputSize));
    }

    [Fact]
    public void Missing_weights_name_the_fetch_command()
    {
        var dir = Directory.CreateTempSubdirectory("deid-ssd-").FullName;
        try
        {
            var e = Assert.Throws<FileNotFoundException>(() => SsdMobilenetv1.Load(dir));
            Assert.Contains("deid models fetch", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
