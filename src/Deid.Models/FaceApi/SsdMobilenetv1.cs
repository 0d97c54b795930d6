using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deid.Models.FaceApi;

/// <summary>One face found by <see cref="SsdMobilenetv1"/>: box in the input image's pixels (x, y = top-left).</summary>
public readonly record struct SsdFace(float X, float Y, float Width, float Height, float Score)
{
    public float Right => X + Width;
    public float Bottom => Y + Height;
}

/// <summary>
/// Port of face-api.js 1.7.15's SsdMobilenetv1 face detector: MobileNetV1 backbone, six SSD box predictors over
/// 5118 fixed anchors (stored in the weights as Output/extra_dim), sigmoid face score, face-api's greedy NMS
/// (IoU 0.5). The image is scaled so its long side is 512 and drawn at the top-left of a black 512² square, as
/// face-api does for this network (it does not centre it, unlike its other nets).
/// </summary>
public sealed class SsdMobilenetv1 : nn.Module<Tensor, (Tensor Boxes, Tensor Scores)>
{
    public const string ManifestName = "ssd_mobilenetv1_model-weights_manifest.json";
    public const int InputSize = 512;
    /// <summary>
    /// What the sides of a smaller input (the top-left part of the 512² one, see <see cref="forward"/>) must be
    /// multiples of: the backbone's output stride at the first box predictor.
    /// </summary>
    public const int PartAlignment = 32;
    public const int AnchorCount = 5118;
    public const float DefaultMinConfidence = 0.5f;
    public const int DefaultMaxResults = 100;
    private const float IouThreshold = 0.5f;

    // Depthwise layers 2, 4, 6 and 12 downsample (output stride 32 at layer 13, 16 at layer 11).
    private static readonly int[] StridedPairs = { 2, 4, 6, 12 };
    // Anchors per cell of each predictor's feature map: 3 on conv11 (32²), 6 on the others (16², 8², 4², 2², 1²).
    private static readonly (int Cells, int Anchors)[] PredictorGrid = { (32 * 32, 3), (16 * 16, 6), (8 * 8, 6), (4 * 4, 6), (2 * 2, 6), (1, 6) };

    private readonly Pointwise conv0;
    private readonly ModuleList<Pair> pairs = new();
    private readonly ModuleList<Pointwise> extra = new();
    private readonly ModuleList<BoxPredictor> predictors = new();
    private readonly Parameter anchors;   // [5118, 4] as (ymin, xmin, ymax, xmax) in 0..1
    private readonly Dictionary<(int H, int W), Tensor> partAnchors = new();   // see PartAnchors

    private SsdMobilenetv1(FaceApiWeights w) : base(nameof(SsdMobilenetv1))
    {
        CheckGraphConstants(w);
        conv0 = new Pointwise(w, "MobilenetV1/Conv2d_0_pointwise", 3, 32, 3, stride: 2);
        long[] widths = { 32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024 };
        for (var i = 1; i <= 13; i++)
            pairs.Add(new Pair(w, i, widths[i - 1], widths[i], StridedPairs.Contains(i) ? 2 : 1));
        // Prediction/Conv2d_0..7: 1×1 reductions alternating with 3×3 stride-2 convolutions.
        (long Cin, long Cout, long K, long S)[] extraShapes =
            { (1024, 256, 1, 1), (256, 512, 3, 2), (512, 128, 1, 1), (128, 256, 3, 2), (256, 128, 1, 1), (128, 256, 3, 2), (256, 64, 1, 1), (64, 128, 3, 2) };
        for (var i = 0; i < extraShapes.Length; i++)
        {
            var (cin, cout, k, s) = extraShapes[i];
            extra.Add(new Pointwise(w, $"Prediction/Conv2d_{i}_pointwise", cin, cout, k, s));
        }
        long[] predictorInputs = { 512, 1024, 512, 256, 256, 128 };
        for (var i = 0; i < 6; i++)
            predictors.Add(new BoxPredictor(w, i, predictorInputs[i], PredictorGrid[i].Anchors));
        using var anchorView = w.Get("Output/extra_dim", 1, AnchorCount, 4).reshape(AnchorCount, 4);
        anchors = FaceApiWeights.Frozen(anchorView);
        RegisterComponents();
    }

    /// <summary>Loads the weights from <paramref name="modelDir"/> (default: the store's face-api folder).</summary>
    public static SsdMobilenetv1 Load(string? modelDir = null, Device? device = null)
        => FaceApiWeights.Build(modelDir, ManifestName, w => new SsdMobilenetv1(w), device);

    public Device Device => anchors.device;

    /// <summary>
    /// x: the network input [B,3,512,512] RGB 0..255 (see <see cref="ToNetInput"/>) → boxes [B,5118,4] as
    /// (ymin, xmin, ymax, xmax) relative to the 512² square, and face scores [B,5118]. A smaller input
    /// [B,3,H,W] (sides multiples of <see cref="PartAlignment"/>) is the 512² input's top-left H×W part alone: boxes
    /// and scores then come for the anchors of the cells it has (<see cref="PartAnchors"/>), still relative to the
    /// 512² square. Its cost is about its share of the 512² pixels.
    /// </summary>
    public override (Tensor Boxes, Tensor Scores) forward(Tensor x)
    {
        if (x.dim() != 4 || x.shape[1] != 3 || !IsInputSize(x.shape[2], x.shape[3]))
            throw new ArgumentException($"SsdMobilenetv1 expects [B,3,{InputSize},{InputSize}] RGB (or a top-left part of it, sides multiples of {PartAlignment}), got [{string.Join(",", x.shape)}]");
        var (h, w) = ((int)x.shape[2], (int)x.shape[3]);
        using var scope = torch.NewDisposeScope();
        var o = conv0.forward(ChannelsLast(x.to(anchors.device) / 127.5f - 1f));
        Tensor? conv11 = null;
        for (var i = 0; i < pairs.Count; i++)
        {
            o = pairs[i].forward(o);
            if (i + 1 == 11) conv11 = o;
        }
        var features = new Tensor[6];
        features[0] = conv11!;
        features[1] = o;
        var e = o;
        for (var i = 0; i < extra.Count; i++)
        {
            e = extra[i].forward(e);
            if (i % 2 == 1) features[2 + i / 2] = e;
        }
        var enc = new List<Tensor>(6);
        var cls = new List<Tensor>(6);
        for (var i = 0; i < 6; i++)
        {
            var (b, c) = predictors[i].forward(features[i]);
            enc.Add(b); cls.Add(c);
        }
        var encoding = torch.cat(enc, 1);
        var logits = torch.cat(cls, 1);
        var boxes = Decode(encoding, h == InputSize && w == InputSize ? anchors : PartAnchors(h, w));
        // Class 0 is background; face-api takes the sigmoid of class 1 alone (no softmax).
        var scores = torch.sigmoid(logits.select(2, 1));
        return (boxes.MoveToOuterDisposeScope(), scores.MoveToOuterDisposeScope());
    }

    /// <summary>Whether <see cref="forward"/> takes an input of this size: 512², or a top-left part of it.</summary>
    public static bool IsInputSize(long height, long width) =>
        height is > 0 and <= InputSize && width is > 0 and <= InputSize && height % PartAlignment == 0 && width % PartAlignment == 0;

    /// <summary>
    /// The anchors of an H×W input's cells, in the order its feature maps flatten them: the top-left
    /// ⌈H/s⌉×⌈W/s⌉ cells of each map of stride s. Every convolution pads only bottom/right at stride 2 (TF 'same'
    /// on the 512² input's even sizes; <see cref="ConvSame"/> keeps that on the part's odd ones), so these cells lie
    /// over the same input pixels as in the 512² input and their anchors mean the same boxes. What differs is only
    /// what lies beyond the part's right and bottom edges: zero padding instead of the rest of the 512² input.
    /// </summary>
    private Tensor PartAnchors(int h, int w)
    {
        lock (partAnchors)
        {
            if (partAnchors.TryGetValue((h, w), out var cached) && cached.device == anchors.device) return cached;
            cached?.Dispose();
            using var index = torch.tensor(PartAnchorIndices(h, w));
            var part = anchors.index_select(0, index).DetachFromDisposeScope();
            partAnchors[(h, w)] = part;
            return part;
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            lock (partAnchors)
            {
                foreach (var t in partAnchors.Values) t.Dispose();
                partAnchors.Clear();
            }
        base.Dispose(disposing);
    }

    /// <summary>Indices into the 5118 anchors of an H×W part's (see <see cref="PartAnchors"/>).</summary>
    public static int[] PartAnchorIndices(int h, int w)
    {
        var indices = new List<int>();
        var offset = 0;
        foreach (var (cells, perCell) in PredictorGrid)
        {
            var n = (int)Math.Round(Math.Sqrt(cells));
            int stride = InputSize / n, rows = (h + stride - 1) / stride, cols = (w + stride - 1) / stride;
            for (var y = 0; y < rows; y++)
                for (var x = 0; x < cols; x++)
                    for (var a = 0; a < perCell; a++)
                        indices.Add(offset + (y * n + x) * perCell + a);
            offset += cells * perCell;
        }
        return indices.ToArray();
    }

    /// <summary>
    /// The same tensor laid out channels-last (NHWC strides; TorchSharp has no memory_format argument, so through
    /// a permuted copy; a tensor already laid out so, e.g. an HWC byte image permuted to NCHW, is returned as is).
    /// oneDNN then runs every convolution in NHWC without reordering each layer's input and output to its blocked
    /// layout and back (the depthwise layers are memory-bound, so those reorders were a large share of a pass).
    /// Only float rounding changes.
    /// </summary>
    internal static Tensor ChannelsLast(Tensor t)
    {
        var (c, h, w) = (t.shape[1], t.shape[2], t.shape[3]);
        var st = t.stride();
        if (st[1] == 1 && st[3] == c && st[2] == c * w && st[0] == c * h * w) return t.alias();
        return t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
    }

    private static Parameter FrozenChannelsLast(Tensor t)
    {
        using var nhwc = ChannelsLast(t);
        return FaceApiWeights.Frozen(nhwc);
    }

    /// <summary>The standard SSD box coder with variances (10, 10, 5, 5), centre/size relative to each anchor.</summary>
    private static Tensor Decode(Tensor enc, Tensor anchors)
    {
        var a = anchors.unsqueeze(0);
        var aSize = a[.., .., 2..4] - a[.., .., 0..2];
        var aCentre = a[.., .., 0..2] + aSize / 2f;
        var centre = enc[.., .., 0..2] / 10f * aSize + aCentre;
        var half = torch.exp(enc[.., .., 2..4] / 5f) * aSize / 2f;
        return torch.cat(new[] { centre - half, centre + half }, 2);
    }

    /// <summary>
    /// face-api's network input for images [B,3,H,W] RGB 0..255: scaled so the long side is 512, drawn at the
    /// top-left of a 512² black square. Resampling follows Chromium's canvas (see <see cref="TfOps.ToSquareInput"/>):
    /// 1/16-quantised bilinear fractions clamped at the image edge, pixels drawn only where their centre is inside
    /// the drawn rectangle, 8-bit truncation. Gathers two rows/columns per output pixel, so it stays cheap for video.
    /// </summary>
    public static Tensor ToNetInput(Tensor images)
    {
        if (images.dim() != 4 || images.shape[1] != 3)
            throw new ArgumentException($"expected images [B,3,H,W] RGB, got [{string.Join(",", images.shape)}]");
        var h = images.shape[2]; var w = images.shape[3];
        if (h == InputSize && w == InputSize) return images.to_type(ScalarType.Float32);
        using var scope = torch.NewDisposeScope();
        var scale = (double)InputSize / Math.Max(h, w);
        var x = images.to_type(ScalarType.Float32);
        x = ResampleAxis(x, 2, h, scale);
        x = ResampleAxis(x, 3, w, scale);
        return x.floor().MoveToOuterDisposeScope();
    }

    private static Tensor ResampleAxis(Tensor x, int dim, long len, double scale)
    {
        var i0 = new long[InputSize]; var i1 = new long[InputSize];
        var w0 = new float[InputSize]; var w1 = new float[InputSize];
        var end = len * scale;
        for (var i = 0; i < InputSize; i++)
        {
            var centre = i + 0.5;
            if (centre >= end) continue;   // outside the drawn image: stays black (both weights 0)
            // Skia maps the pixel centre back in 16.16 fixed point and keeps 4 bits of the fraction.
            var f = (long)Math.Floor((centre / scale - 0.5) * 65536);
            var sub = (f >> 12) & 15;
            i0[i] = Math.Clamp(f >> 16, 0, len - 1);
            i1[i] = Math.Clamp((f >> 16) + 1, 0, len - 1);
            w0[i] = (16 - sub) / 16f;
            w1[i] = sub / 16f;
        }
        var shape = dim == 2 ? new long[] { 1, 1, InputSize, 1 } : new long[] { 1, 1, 1, InputSize };
        using var t0 = torch.tensor(i0, device: x.device);
        using var t1 = torch.tensor(i1, device: x.device);
        using var f0 = torch.tensor(w0, device: x.device).reshape(shape);
        using var f1 = torch.tensor(w1, device: x.device).reshape(shape);
        return x.index_select(dim, t0) * f0 + x.index_select(dim, t1) * f1;
    }

    /// <summary>
    /// Faces in images [B,3,H,W] RGB 0..255 (any size), per image strongest first, boxes in input pixels:
    /// face-api's locateFaces with the given minConfidence/maxResults (its defaults 0.5 / 100).
    /// </summary>
    public List<SsdFace>[] Detect(Tensor images, float minConfidence = DefaultMinConfidence, int maxResults = DefaultMaxResults)
    {
        long h = images.shape[2], w = images.shape[3];
        // face-api maps the unit square back through the rounded size the image was scaled to.
        var scale = (double)InputSize / Math.Max(h, w);
        var padX = InputSize / Math.Round(w * scale);
        var padY = InputSize / Math.Round(h * scale);
        using var scope = torch.NewDisposeScope();
        return Locate(ToNetInput(images.to(anchors.device)), minConfidence, maxResults,
            (top, left, bottom, right, score) => new SsdFace((float)(left * padX * w), (float)(top * padY * h),
                (float)((right - left) * padX * w), (float)((bottom - top) * padY * h), score));
    }

    /// <summary>
    /// Faces in network inputs [B,3,H,W] RGB 0..255: 512² as <see cref="ToNetInput"/> makes them, or a top-left part
    /// of such an input alone (see <see cref="forward"/>); boxes in input pixels, clipped to the input. For a caller
    /// that lays out the input itself.
    /// </summary>
    public List<SsdFace>[] DetectInputs(Tensor inputs, float minConfidence = DefaultMinConfidence, int maxResults = DefaultMaxResults) =>
        Locate(inputs, minConfidence, maxResults,
            (top, left, bottom, right, score) => new SsdFace((float)(left * InputSize), (float)(top * InputSize),
                (float)((right - left) * InputSize), (float)((bottom - top) * InputSize), score));

    /// <summary>
    /// The network, then NMS per input; each kept box goes to <paramref name="map"/> as (top, left, bottom, right)
    /// relative to the 512² square, clipped to the input.
    /// </summary>
    private List<SsdFace>[] Locate(Tensor inputs, float minConfidence, int maxResults, Func<double, double, double, double, float, SsdFace> map)
    {
        if (minConfidence is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(minConfidence), "minConfidence must lie in (0, 1)");
        if (maxResults < 1) throw new ArgumentOutOfRangeException(nameof(maxResults), "maxResults must be positive");
        float[] boxes, scores;
        long batch = inputs.shape[0];
        double clipY = (double)inputs.shape[2] / InputSize, clipX = (double)inputs.shape[3] / InputSize;
        using (var scope = torch.NewDisposeScope())
        using (torch.inference_mode())
        {
            var (b, s) = forward(inputs.to(anchors.device).to_type(ScalarType.Float32));
            boxes = b.cpu().data<float>().ToArray();
            scores = s.cpu().data<float>().ToArray();
        }
        int count = scores.Length / (int)batch;
        var result = new List<SsdFace>[batch];
        for (var n = 0; n < batch; n++)
        {
            var bs = boxes.AsSpan(n * count * 4, count * 4);
            var sc = scores.AsSpan(n * count, count);
            var faces = new List<SsdFace>();
            foreach (var k in NonMaxSuppression(bs, sc, maxResults, minConfidence))
                faces.Add(map(Math.Max(0, bs[k * 4]), Math.Max(0, bs[k * 4 + 1]), Math.Min(clipY, bs[k * 4 + 2]), Math.Min(clipX, bs[k * 4 + 3]), sc[k]));
            result[n] = faces;
        }
        return result;
    }

    /// <summary>
    /// face-api's greedy NMS: candidates above the threshold by falling score; one is kept unless it overlaps a kept
    /// box by IoU &gt; 0.5 (IoU on the raw, unclipped boxes).
    /// </summary>
    private static List<int> NonMaxSuppression(ReadOnlySpan<float> boxes, ReadOnlySpan<float> scores, int maxResults, float threshold)
    {
        var candidates = new List<int>();
        for (var i = 0; i < scores.Length; i++)
            if (scores[i] > threshold) candidates.Add(i);
        var sc = scores.ToArray();
        // Stable order for equal scores keeps the result deterministic, as JS's stable sort does.
        candidates = candidates.OrderByDescending(i => sc[i]).ThenBy(i => i).ToList();
        var selected = new List<int>();
        var limit = Math.Min(maxResults, scores.Length);
        foreach (var c in candidates)
        {
            if (selected.Count >= limit) break;
            var keep = true;
            for (var j = selected.Count - 1; j >= 0 && keep; j--)
                keep = Iou(boxes, c, selected[j]) <= IouThreshold;
            if (keep) selected.Add(c);
        }
        return selected;
    }

    private static float Iou(ReadOnlySpan<float> b, int i, int j)
    {
        float y0i = Math.Min(b[i * 4], b[i * 4 + 2]), x0i = Math.Min(b[i * 4 + 1], b[i * 4 + 3]);
        float y1i = Math.Max(b[i * 4], b[i * 4 + 2]), x1i = Math.Max(b[i * 4 + 1], b[i * 4 + 3]);
        float y0j = Math.Min(b[j * 4], b[j * 4 + 2]), x0j = Math.Min(b[j * 4 + 1], b[j * 4 + 3]);
        float y1j = Math.Max(b[j * 4], b[j * 4 + 2]), x1j = Math.Max(b[j * 4 + 1], b[j * 4 + 3]);
        var ai = (y1i - y0i) * (x1i - x0i); var aj = (y1j - y0j) * (x1j - x0j);
        if (ai <= 0 || aj <= 0) return 0;
        var inter = Math.Max(Math.Min(y1i, y1j) - Math.Max(y0i, y0j), 0) * Math.Max(Math.Min(x1i, x1j) - Math.Max(x0i, x0j), 0);
        return inter / (ai + aj - inter);
    }

    /// <summary>
    /// The TF graph's own constants ride along in the manifest. face-api hard-codes them; reading them here both
    /// accounts for every weight (strict loading) and proves the hard-coded architecture matches this file.
    /// </summary>
    private static void CheckGraphConstants(FaceApiWeights w)
    {
        void Expect(string name, long[] shape, params float[] want)
        {
            var got = w.Get(name, shape).data<float>().ToArray();
            if (got.Length != want.Length || got.Zip(want).Any(p => Math.Abs(p.First - p.Second) > 1e-6f * Math.Max(1, Math.Abs(p.Second))))
                throw new InvalidDataException($"{ManifestName}: constant '{name}' is [{string.Join(",", got)}], the port assumes [{string.Join(",", want)}]");
        }
        var scalar = Array.Empty<long>();
        Expect("Preprocessor/mul/x", scalar, 1f / 127.5f);
        Expect("Preprocessor/sub/y", scalar, 1f);
        Expect("Preprocessor/ResizeImage/size", new long[] { 2 }, InputSize, InputSize);
        for (var i = 0; i < 6; i++)
            Expect($"Prediction/BoxPredictor_{i}/stack_1/1", scalar, PredictorGrid[i].Cells * PredictorGrid[i].Anchors);
        Expect("Prediction/BoxPredictor_0/stack_1/2", scalar, 3);
        Expect("Prediction/BoxPredictor_0/stack/3", scalar, 4);
        Expect("Prediction/BoxPredictor_0/strided_slice/stack", new long[] { 1 }, 0);
        Expect("Prediction/BoxPredictor_0/strided_slice/stack_1", new long[] { 1 }, 1);
        Expect("Postprocessor/stack/1", scalar, AnchorCount);
        Expect("Postprocessor/Slice/begin", new long[] { 3 }, 0, 0, 1);
        Expect("Postprocessor/Slice/size", new long[] { 3 }, -1, -1, -1);
        Expect("concat_1/axis", scalar, 1);
    }

    /// <summary>
    /// TF 'same' padding for a k×k conv: symmetric at stride 1; at stride 2 TF pads bottom/right only on the 512²
    /// input's sizes (all even). On an odd size (a smaller input's, see <see cref="forward"/>) TF would pad the top
    /// too and shift the grid against the 512² input's, so the padding goes bottom/right there as well.
    /// </summary>
    private static Tensor ConvSame(Tensor x, Tensor weight, Tensor? bias, long stride, long groups = 1)
    {
        var k = weight.shape[2];
        if (stride == 1)
            return nn.functional.conv2d(x, weight, bias, padding: new[] { k / 2, k / 2 }, groups: groups);
        long Total(long n) => Math.Max(((n + stride - 1) / stride - 1) * stride + k - n, 0);
        long th = Total(x.shape[2]), tw = Total(x.shape[3]);
        using var padded = nn.functional.pad(x, new[] { 0, tw, 0, th });
        return nn.functional.conv2d(padded, weight, bias, strides: new[] { stride, stride }, groups: groups);
    }

    /// <summary>face-api's "pointwise" layer: conv (any kernel) + folded batch-norm offset + ReLU6.</summary>
    private sealed class Pointwise : nn.Module<Tensor, Tensor>
    {
        private readonly Parameter weight, bias;
        private readonly long stride;

        public Pointwise(FaceApiWeights w, string prefix, long cin, long cout, long k, long stride) : base(prefix)
        {
            this.stride = stride;
            weight = FrozenChannelsLast(Weights.TfjsManifest.ConvToTorch(w.Get($"{prefix}/weights", k, k, cin, cout)));
            bias = FaceApiWeights.Frozen(w.Get($"{prefix}/convolution_bn_offset", cout));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => ConvSame(x, weight, bias, stride).clamp_(0, 6);
    }

    /// <summary>Depthwise 3×3 + batch norm + ReLU6, then a 1×1 pointwise layer.</summary>
    private sealed class Pair : nn.Module<Tensor, Tensor>
    {
        private readonly Parameter dwWeight, dwBias;
        private readonly Pointwise pointwise;
        private readonly long stride;

        public Pair(FaceApiWeights w, int idx, long cin, long cout, long stride) : base($"conv_{idx}")
        {
            this.stride = stride;
            var p = $"MobilenetV1/Conv2d_{idx}_depthwise";
            using var filters = Weights.TfjsManifest.DepthwiseToTorch(w.Get($"{p}/depthwise_weights", 3, 3, cin, 1));
            var gamma = w.Get($"{p}/BatchNorm/gamma", cin);
            var beta = w.Get($"{p}/BatchNorm/beta", cin);
            var mean = w.Get($"{p}/BatchNorm/moving_mean", cin);
            var variance = w.Get($"{p}/BatchNorm/moving_variance", cin);
            // Inference-time batch norm is affine per channel, so it folds into the depthwise kernel and a bias
            // (TF's epsilon 0.001). Changes float rounding only.
            using var k = gamma / torch.sqrt(variance + 0.0010000000474974513f);
            using var folded = filters * k.reshape(cin, 1, 1, 1);
            using var b = beta - mean * k;
            dwWeight = FrozenChannelsLast(folded);
            dwBias = FaceApiWeights.Frozen(b);
            pointwise = new Pointwise(w, $"MobilenetV1/Conv2d_{idx}_pointwise", cin, cout, 1, 1);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            var o = ConvSame(x, dwWeight, dwBias, stride, groups: x.shape[1]).clamp_(0, 6);
            return pointwise.forward(o);
        }
    }

    /// <summary>1×1 box-encoding and class convolutions of one feature map, flattened anchor-major as TF's NHWC reshape.</summary>
    private sealed class BoxPredictor : nn.Module<Tensor, (Tensor, Tensor)>
    {
        private readonly Parameter boxWeight, boxBias, clsWeight, clsBias;

        public BoxPredictor(FaceApiWeights w, int idx, long cin, int anchorsPerCell) : base($"box_predictor_{idx}")
        {
            var p = $"Prediction/BoxPredictor_{idx}";
            boxWeight = FrozenChannelsLast(Weights.TfjsManifest.ConvToTorch(w.Get($"{p}/BoxEncodingPredictor/weights", 1, 1, cin, anchorsPerCell * 4)));
            boxBias = FaceApiWeights.Frozen(w.Get($"{p}/BoxEncodingPredictor/biases", anchorsPerCell * 4));
            clsWeight = FrozenChannelsLast(Weights.TfjsManifest.ConvToTorch(w.Get($"{p}/ClassPredictor/weights", 1, 1, cin, anchorsPerCell * 3)));
            clsBias = FaceApiWeights.Frozen(w.Get($"{p}/ClassPredictor/biases", anchorsPerCell * 3));
            RegisterComponents();
        }

        public override (Tensor, Tensor) forward(Tensor x)
        {
            var b = x.shape[0];
            var box = nn.functional.conv2d(x, boxWeight, boxBias).permute(0, 2, 3, 1).reshape(b, -1, 4);
            var cls = nn.functional.conv2d(x, clsWeight, clsBias).permute(0, 2, 3, 1).reshape(b, -1, 3);
            return (box, cls);
        }
    }
}
