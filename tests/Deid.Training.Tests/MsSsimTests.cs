using System.Globalization;
using Deid.TestSupport;
using Deid.Training;
using Deid.Training.Losses;
using OpenCvSharp;
using Xunit;
using static TorchSharp.torch;

namespace Deid.Training.Tests;

/// <summary>
/// MS-SSIM against an independent implementation in Debian's python3-torch (Reference/ms_ssim_reference.py, float64,
/// 2-D window), on real face images and distorted versions of them.
/// </summary>
public class MsSsimTests
{
    private const string Python = "/usr/bin/python3";

    /// <summary>A frame of a shared speaker clip (RGB [0,1], 256²) and two face-api people crops (150², grey → RGB).</summary>
    internal static List<(string Name, Tensor Image)> RealFaces()
    {
        var list = new List<(string, Tensor)>();
        using var tmp = new TempDir();
        var raw = tmp.File("frame.rgb");
        Tool.Ffmpeg("-i", TestPaths.Video("talk_small.mp4"), "-vf", "select=eq(n\\,12),scale=256:256", "-frames:v", "1",
            "-f", "rawvideo", "-pix_fmt", "rgb24", raw);
        var bytes = File.ReadAllBytes(raw);
        list.Add(("talk_small#12", tensor(bytes, new long[] { 256, 256, 3 }).permute(2, 0, 1).to_type(ScalarType.Float32).div(255f).contiguous()));
        foreach (var person in new[] { "amy/amy1.png", "sheldon/sheldon2.png" })
        {
            var path = TestPaths.Golden("face-api", "people", person);
            if (!File.Exists(path)) continue;
            using var m = Cv2.ImRead(path, ImreadModes.Grayscale);
            var px = new byte[m.Rows * m.Cols];
            System.Runtime.InteropServices.Marshal.Copy(m.Data, px, 0, px.Length);
            list.Add((person, tensor(px, new long[] { 1, m.Rows, m.Cols }).to_type(ScalarType.Float32).div(255f).expand(3, -1, -1).contiguous()));
        }
        return list;
    }

    internal static IEnumerable<(string Name, Tensor Image)> Distortions(Tensor x)
    {
        var gen = new TorchSharp.torch.Generator(7);
        yield return ("identical", x.clone());
        yield return ("noise 0.05", (x + 0.05f * randn(x.shape, generator: gen)).clamp(0, 1));
        yield return ("noise 0.2", (x + 0.2f * randn(x.shape, generator: gen)).clamp(0, 1));
        yield return ("blur 5", nn.functional.avg_pool2d(x.unsqueeze(0), 5, 1, 2, count_include_pad: false)[0]);
        yield return ("contrast", (x * 0.7f + 0.1f).clamp(0, 1));
        yield return ("shift 3", x.roll(3, 2));
    }

    [Fact]
    public void Matches_the_independent_python_reference_on_real_faces_and_distortions()
    {
        Assert.True(File.Exists(Python), "Debian's python3 is needed for the reference");
        using var scope = NewDisposeScope();
        using var tmp = new TempDir();
        var cases = new List<(string Name, Tensor A, Tensor B)>();
        var faces = RealFaces();
        Assert.True(faces.Count >= 2, "real face images missing");
        foreach (var (name, img) in faces)
            foreach (var (d, dist) in Distortions(img))
                cases.Add(($"{name} / {d}", img, dist));
        cases.Add(("two different people", faces[1].Image, faces[^1].Image));
        var list = new List<string>();
        for (int i = 0; i < cases.Count; i++)
        {
            var (_, a, b) = cases[i];
            string pa = tmp.File($"{i}a.f32"), pb = tmp.File($"{i}b.f32");
            File.WriteAllBytes(pa, System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.contiguous().data<float>().ToArray().AsSpan()).ToArray());
            File.WriteAllBytes(pb, System.Runtime.InteropServices.MemoryMarshal.AsBytes(b.contiguous().data<float>().ToArray().AsSpan()).ToArray());
            list.Add($"{pa} {pb} {a.shape[0]} {a.shape[1]} {a.shape[2]}");
        }
        var listFile = tmp.File("list.txt");
        File.WriteAllLines(listFile, list);
        var script = Path.Combine(AppContext.BaseDirectory, "Reference", "ms_ssim_reference.py");
        var r = Tool.Run(Python, script, listFile);
        Assert.True(r.Code == 0, r.StdErr);
        var expected = r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(cases.Count, expected.Length);
        var report = new List<string>();
        for (int i = 0; i < cases.Count; i++)
        {
            var (name, a, b) = cases[i];
            double got = MsSsim.Compute(a.unsqueeze(0), b.unsqueeze(0)).item<float>();
            report.Add($"{name}: ours {got:F6} python {expected[i]:F6}");
            Assert.True(Math.Abs(got - expected[i]) < 2e-5, string.Join("\n", report));
            if (name.EndsWith("identical")) Assert.True(Math.Abs(got - 1) < 1e-6, $"{name}: {got}");
        }
        // Distortions order as expected: mild noise scores above strong noise.
        Assert.True(expected[1] > expected[2]);
        TestContext.Current.TestOutputHelper?.WriteLine(string.Join("\n", report));
    }

    [Fact]
    public void Batch_gives_one_value_per_image_and_a_finite_gradient_even_when_a_factor_is_clamped_to_zero()
    {
        using var scope = NewDisposeScope();
        var a = rand(3, 3, 40, 40, generator: new TorchSharp.torch.Generator(1));
        var b = (1 - a).detach().requires_grad_(true);     // anti-correlated: cs < 0 at fine scales → relu gives 0
        var v = MsSsim.Compute(a, b);
        Assert.Equal(new long[] { 3 }, v.shape);
        v.sum().backward();
        Assert.True(isfinite(b.grad!).all().item<bool>());
        var same = MsSsim.Compute(a, a.clone());
        Assert.True((same - 1).abs().max().item<float>() < 1e-6);
    }

    [Fact]
    public void Reconstruction_loss_is_zero_for_identical_images_and_mixes_msssim_and_l1()
    {
        using var scope = NewDisposeScope();
        var x = rand(2, 3, 64, 64, generator: new TorchSharp.torch.Generator(3)) * 2 - 1;
        Assert.True(ReconstructionLoss.Compute(x, x.clone()).item<float>() < 1e-6);
        var y = (x + 0.2f).clamp(-1, 1);
        double ms = MsSsim.FromMinusOneToOne(x, y).mean().item<float>();
        double l1 = ((x - y).abs().mean() * 0.5).item<float>();
        Assert.Equal(0.84 * (1 - ms) + 0.16 * l1, ReconstructionLoss.Compute(x, y).item<float>(), 5);
    }
}
