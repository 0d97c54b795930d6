using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deid.Models.FaceApi;

/// <summary>
/// Port of face-api.js FaceRecognitionNet (dlib's ResNet-29 face descriptor): 150×150 RGB face chip → 128-d
/// descriptor (Euclidean distance &lt; 0.6 ≈ same person). Weights are frozen; the forward pass is differentiable
/// with respect to the input so it can serve as E_id / an identity loss.
/// </summary>
public sealed class FaceRecognitionNet : nn.Module<Tensor, Tensor>, IIdentityEncoder
{
    public const string ManifestName = "face_recognition_model-weights_manifest.json";
    public const int InputSize = 150;
    public int Dim => 128;

    private readonly ConvScale conv32_down;
    private readonly Residual conv32_1, conv32_2, conv32_3;
    private readonly Residual conv64_down, conv64_1, conv64_2, conv64_3;
    private readonly Residual conv128_down, conv128_1, conv128_2;
    private readonly Residual conv256_down, conv256_1, conv256_2, conv256_down_out;
    private readonly Parameter fc;

    private FaceRecognitionNet(FaceApiWeights w) : base(nameof(FaceRecognitionNet))
    {
        conv32_down = new ConvScale(w, "conv32_down", 3, 32, 7);
        conv32_1 = new Residual(w, "conv32_1", 32, 32);
        conv32_2 = new Residual(w, "conv32_2", 32, 32);
        conv32_3 = new Residual(w, "conv32_3", 32, 32);
        conv64_down = new Residual(w, "conv64_down", 32, 64);
        conv64_1 = new Residual(w, "conv64_1", 64, 64);
        conv64_2 = new Residual(w, "conv64_2", 64, 64);
        conv64_3 = new Residual(w, "conv64_3", 64, 64);
        conv128_down = new Residual(w, "conv128_down", 64, 128);
        conv128_1 = new Residual(w, "conv128_1", 128, 128);
        conv128_2 = new Residual(w, "conv128_2", 128, 128);
        conv256_down = new Residual(w, "conv256_down", 128, 256);
        conv256_1 = new Residual(w, "conv256_1", 256, 256);
        conv256_2 = new Residual(w, "conv256_2", 256, 256);
        conv256_down_out = new Residual(w, "conv256_down_out", 256, 256);
        fc = FaceApiWeights.Frozen(w.Get("fc", 256, 128));
        RegisterComponents();
    }

    /// <summary>Loads the weights from <paramref name="modelDir"/> (default: the store's face-api folder).</summary>
    public static FaceRecognitionNet Load(string? modelDir = null, Device? device = null)
        => FaceApiWeights.Build(modelDir, ManifestName, w => new FaceRecognitionNet(w), device);

    /// <summary>x: [B,3,150,150] RGB in 0..255 → [B,128] descriptors (not L2-normalised, as in face-api).</summary>
    public override Tensor forward(Tensor x)
    {
        if (x.dim() != 4 || x.shape[1] != 3)
            throw new ArgumentException($"FaceRecognitionNet expects [B,3,H,W] RGB, got [{string.Join(",", x.shape)}]");
        using var scope = torch.NewDisposeScope();
        var input = x.shape[2] == InputSize && x.shape[3] == InputSize ? x : TfOps.ToSquareInput(x, InputSize);
        var o = conv32_down.Forward(TfOps.Normalize(input), 2, same: false, relu: true);
        o = nn.functional.max_pool2d(o, 3, 2);
        o = conv32_1.Plain(o); o = conv32_2.Plain(o); o = conv32_3.Plain(o);
        o = conv64_down.Down(o); o = conv64_1.Plain(o); o = conv64_2.Plain(o); o = conv64_3.Plain(o);
        o = conv128_down.Down(o); o = conv128_1.Plain(o); o = conv128_2.Plain(o);
        o = conv256_down.Down(o); o = conv256_1.Plain(o); o = conv256_2.Plain(o);
        o = conv256_down_out.Down(o);
        var pooled = o.mean(new long[] { 2, 3 });
        return pooled.matmul(fc).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Where dlib's 150×150 face chip (what this network was trained on) lies inside an FFHQ-aligned crop,
    /// as fractions of the crop side: left, top, size. FFHQ crops frame the whole head; the chip is tighter.
    /// Measured: FFHQ quads computed from FaceLandmark68Net landmarks on the 40 dlib chips in
    /// golden/face-api/people give left 0.190±0.016, top 0.294±0.009, size 0.639±0.026.
    /// </summary>
    public static (float Left, float Top, float Size) ChipInFfhqCrop { get; } = (0.19f, 0.294f, 0.639f);

    /// <summary>
    /// IIdentityEncoder: FFHQ-aligned crops [B,3,S,S] RGB in [-1,1] → [B,128]. The chip region is resampled
    /// bilinearly (differentiable).
    /// </summary>
    public Tensor Encode(Tensor alignedCrops256)
    {
        if (alignedCrops256.dim() != 4 || alignedCrops256.shape[1] != 3)
            throw new ArgumentException($"Encode expects [B,3,S,S] RGB in [-1,1], got [{string.Join(",", alignedCrops256.shape)}]");
        using var scope = torch.NewDisposeScope();
        var chip = CropChip(alignedCrops256, InputSize);
        return forward((chip + 1f) * 127.5f).MoveToOuterDisposeScope();
    }

    /// <summary>Resamples the dlib-chip region of FFHQ crops to size×size (differentiable, device-agnostic).</summary>
    public static Tensor CropChip(Tensor crops, int size) => TfOps.CropRegion(crops, ChipInFfhqCrop, size);

    /// <summary>conv (+bias) followed by dlib's affine "scale" layer.</summary>
    private sealed class ConvScale : nn.Module
    {
        private readonly Parameter weight, bias, scale_weights, scale_biases;

        public ConvScale(FaceApiWeights w, string prefix, long cin, long cout, long k) : base(prefix)
        {
            weight = FaceApiWeights.Frozen(Weights.TfjsManifest.ConvToTorch(w.Get($"{prefix}/conv/filters", k, k, cin, cout)));
            bias = FaceApiWeights.Frozen(w.Get($"{prefix}/conv/bias", cout));
            scale_weights = FaceApiWeights.Frozen(w.Get($"{prefix}/scale/weights", cout).reshape(1, cout, 1, 1));
            scale_biases = FaceApiWeights.Frozen(w.Get($"{prefix}/scale/biases", cout).reshape(1, cout, 1, 1));
            RegisterComponents();
        }

        public Tensor Forward(Tensor x, long stride, bool same, bool relu)
        {
            var o = TfOps.Conv(x, weight, bias, stride, same);
            o = o * scale_weights + scale_biases;
            return relu ? nn.functional.relu(o) : o;
        }
    }

    private sealed class Residual : nn.Module
    {
        private readonly ConvScale conv1, conv2;
        private readonly long cin, cout;

        public Residual(FaceApiWeights w, string prefix, long cin, long cout) : base(prefix)
        {
            this.cin = cin; this.cout = cout;
            conv1 = new ConvScale(w, $"{prefix}/conv1", cin, cout, 3);
            conv2 = new ConvScale(w, $"{prefix}/conv2", cout, cout, 3);
            RegisterComponents();
        }

        public Tensor Plain(Tensor x)
        {
            var o = conv1.Forward(x, 1, same: true, relu: true);
            o = conv2.Forward(o, 1, same: true, relu: false);
            return nn.functional.relu(o + x);
        }

        /// <summary>Strided residual: 'valid' stride-2 conv; the shortcut is a 2×2 average pool, zero-padded to match.</summary>
        public Tensor Down(Tensor x)
        {
            var o = conv1.Forward(x, 2, same: false, relu: true);
            o = conv2.Forward(o, 1, same: true, relu: false);
            var pooled = nn.functional.avg_pool2d(x, 2, 2);
            if (pooled.shape[2] != o.shape[2] || pooled.shape[3] != o.shape[3])
                // face-api appends one zero row and one zero column to the conv branch (odd input sizes).
                o = nn.functional.pad(o, new long[] { 0, pooled.shape[3] - o.shape[3], 0, pooled.shape[2] - o.shape[2] });
            if (cout != cin)
                pooled = nn.functional.pad(pooled, new long[] { 0, 0, 0, 0, 0, cout - cin });
            return nn.functional.relu(o + pooled);
        }
    }
}
