using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deid.Models.FaceApi;

/// <summary>
/// Port of face-api.js FaceLandmark68Net (and its Tiny variant): a face crop resized to 112×112 → 68 landmarks
/// (iBUG 300-W order). Frozen weights; differentiable with respect to the input (used by the landmark loss L_lnd).
/// </summary>
public sealed class FaceLandmark68Net : nn.Module<Tensor, Tensor>
{
    public const string ManifestName = "face_landmark_68_model-weights_manifest.json";
    public const string TinyManifestName = "face_landmark_68_tiny_model-weights_manifest.json";
    public const int InputSize = 112;

    private readonly DenseBlock dense0, dense1, dense2;
    private readonly DenseBlock? dense3;
    private readonly Parameter fc_weights, fc_bias;

    /// <summary>True for the Tiny variant (three 3-layer dense blocks, 128 features).</summary>
    public bool IsTiny { get; }

    private FaceLandmark68Net(FaceApiWeights w, bool tiny) : base(tiny ? "FaceLandmark68TinyNet" : nameof(FaceLandmark68Net))
    {
        IsTiny = tiny;
        var layers = tiny ? 3 : 4;
        dense0 = new DenseBlock(w, "dense0", 3, 32, first: true, layers);
        dense1 = new DenseBlock(w, "dense1", 32, 64, first: false, layers);
        dense2 = new DenseBlock(w, "dense2", 64, 128, first: false, layers);
        if (!tiny) dense3 = new DenseBlock(w, "dense3", 128, 256, first: false, layers);
        var features = tiny ? 128 : 256;
        fc_weights = FaceApiWeights.Frozen(w.Get("fc/weights", features, 136));
        fc_bias = FaceApiWeights.Frozen(w.Get("fc/bias", 136));
        RegisterComponents();
    }

    /// <summary>The Tiny variant (face_landmark_68_tiny_model, ~80 KB): faster, less precise.</summary>
    public static FaceLandmark68Net LoadTiny(string? modelDir = null, Device? device = null) => Load(modelDir, device, tiny: true);

    public static FaceLandmark68Net Load(string? modelDir = null, Device? device = null, bool tiny = false)
        => FaceApiWeights.Build(modelDir, tiny ? TinyManifestName : ManifestName, w => new FaceLandmark68Net(w, tiny), device);

    /// <summary>Raw network output: x [B,3,112,112] RGB 0..255 → [B,68,2] as fractions of the 112×112 input.</summary>
    public Tensor Raw(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var o = dense0.Forward(TfOps.Normalize(x));
        o = dense1.Forward(o);
        o = dense2.Forward(o);
        // Full: 112 → 7×7 after four stride-2 blocks; Tiny: 14×14 after three. Either pools to 1×1.
        if (dense3 is not null) o = dense3.Forward(o);
        o = nn.functional.avg_pool2d(o, o.shape[2], 2);
        var flat = o.flatten(1);
        return (flat.matmul(fc_weights) + fc_bias).reshape(-1, 68, 2).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Landmarks of face images x [B,3,H,W] RGB 0..255 (one size for the batch), in input pixel coordinates
    /// [B,68,2] (x, y). Like face-api in a browser, non-square inputs are drawn centred on a zero square first.
    /// </summary>
    public override Tensor forward(Tensor x)
    {
        if (x.dim() != 4 || x.shape[1] != 3)
            throw new ArgumentException($"FaceLandmark68Net expects [B,3,H,W] RGB, got [{string.Join(",", x.shape)}]");
        using var scope = torch.NewDisposeScope();
        var h = x.shape[2]; var w = x.shape[3];
        var side = Math.Max(h, w);
        var rel = Raw(TfOps.ToSquareInput(x, InputSize));
        // imageToSquare centres the image (offset diff/2, fractional when diff is odd); undo that.
        using var shift = torch.tensor(new float[] { (side - w) / 2f, (side - h) / 2f }, device: x.device);
        return (rel * side - shift).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Region of an FFHQ-aligned crop fed to the network (fractions of the crop side): the dlib-chip framing,
    /// on which the face-api reference landmarks (face1.png, face2.png) are reproduced within 1 px.
    /// </summary>
    public static (float Left, float Top, float Size) FaceBoxInFfhqCrop => FaceRecognitionNet.ChipInFfhqCrop;

    /// <summary>
    /// Landmarks of FFHQ-aligned crops [B,3,S,S] RGB in [-1,1] → [B,68,2] in crop pixel coordinates.
    /// Differentiable (resampling is bilinear), device-agnostic.
    /// </summary>
    public Tensor DetectOnCrops(Tensor crops)
    {
        if (crops.dim() != 4 || crops.shape[1] != 3 || crops.shape[2] != crops.shape[3])
            throw new ArgumentException($"DetectOnCrops expects square crops [B,3,S,S] in [-1,1], got [{string.Join(",", crops.shape)}]");
        using var scope = torch.NewDisposeScope();
        var s = crops.shape[2];
        var region = FaceBoxInFfhqCrop;
        var face = TfOps.CropRegion(crops, region, InputSize);
        var rel = Raw((face + 1f) * 127.5f);
        using var origin = torch.tensor(new float[] { region.Left * s, region.Top * s }, device: crops.device);
        return (rel * (region.Size * s) + origin).MoveToOuterDisposeScope();
    }

    /// <summary>Separable conv (depthwise then pointwise) + bias, or a plain conv for the first block's first layer.</summary>
    private sealed class SepConv : nn.Module
    {
        private readonly Parameter? depthwise, pointwise, filters;
        private readonly Parameter bias;
        private readonly long cin;

        public SepConv(FaceApiWeights w, string prefix, long cin, long cout, bool plain) : base(prefix)
        {
            this.cin = cin;
            if (plain) filters = FaceApiWeights.Frozen(Weights.TfjsManifest.ConvToTorch(w.Get($"{prefix}/filters", 3, 3, cin, cout)));
            else
            {
                depthwise = FaceApiWeights.Frozen(Weights.TfjsManifest.DepthwiseToTorch(w.Get($"{prefix}/depthwise_filter", 3, 3, cin, 1)));
                pointwise = FaceApiWeights.Frozen(Weights.TfjsManifest.ConvToTorch(w.Get($"{prefix}/pointwise_filter", 1, 1, cin, cout)));
            }
            bias = FaceApiWeights.Frozen(w.Get($"{prefix}/bias", cout));
            RegisterComponents();
        }

        public Tensor Forward(Tensor x, long stride)
        {
            if (filters is not null) return TfOps.Conv(x, filters, bias, stride, same: true);
            using var dw = TfOps.Conv(x, depthwise!, null, stride, same: true, groups: cin);
            return nn.functional.conv2d(dw, pointwise!, bias);
        }
    }

    private sealed class DenseBlock : nn.Module
    {
        private readonly SepConv conv0, conv1, conv2;
        private readonly SepConv? conv3;

        public DenseBlock(FaceApiWeights w, string prefix, long cin, long cout, bool first, int layers) : base(prefix)
        {
            conv0 = new SepConv(w, $"{prefix}/conv0", cin, cout, plain: first);
            conv1 = new SepConv(w, $"{prefix}/conv1", cout, cout, plain: false);
            conv2 = new SepConv(w, $"{prefix}/conv2", cout, cout, plain: false);
            if (layers == 4) conv3 = new SepConv(w, $"{prefix}/conv3", cout, cout, plain: false);
            RegisterComponents();
        }

        /// <summary>Densely connected: every layer sees the sum of all earlier outputs.</summary>
        public Tensor Forward(Tensor x)
        {
            var out1 = nn.functional.relu(conv0.Forward(x, 2));
            var out2 = conv1.Forward(out1, 1);
            var out3 = conv2.Forward(nn.functional.relu(out1 + out2), 1);
            if (conv3 is null) return nn.functional.relu(out1 + out2 + out3);
            var out4 = conv3.Forward(nn.functional.relu(out1 + out2 + out3), 1);
            return nn.functional.relu(out1 + out2 + out3 + out4);
        }
    }
}
