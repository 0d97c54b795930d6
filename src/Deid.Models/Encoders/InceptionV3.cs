using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace Deid.Models.Encoders;

/// <summary>How pixel values are mapped before the first convolution.</summary>
public enum InceptionInputNormalization
{
    /// <summary>
    /// [-1,1] per channel. This is what torchvision's <c>transform_input=True</c> produces from
    /// ImageNet-normalised input, i.e. what the TF-ported published weights were trained on, and what
    /// the ID-disentanglement paper's Keras InceptionV3 uses.
    /// </summary>
    MinusOneToOne,

    /// <summary>(x - ImageNet mean) / ImageNet std with x in [0,1] (torchvision-trained weights).</summary>
    ImageNet,

    /// <summary>
    /// RGB in [0,1] times 255, nothing else: the ID-disentanglement PyTorch port runs torchvision's Inception3
    /// children as an <c>nn.Sequential</c>, so neither <c>transform_input</c> nor a mean/std normalisation happens.
    /// </summary>
    Zero255,
}

/// <summary>
/// E_attr: torchvision 0.14 <c>inception_v3(aux_logits=True, transform_input=False)</c>, same
/// state_dict keys, shapes and order (580 keys incl. AuxLogits and fc), so published checkpoints load
/// strictly. <see cref="forward"/> returns the pooled 2048-d features (no dropout/fc). Built with
/// <c>numClasses: 0</c> it has no fc at all: the trained E_attr (the port's checkpoint drops fc) is a feature extractor only.
/// </summary>
public sealed class InceptionV3 : Module<Tensor, Tensor>
{
    public const int InputSize = 299;

    // Declaration order = torchvision's assignment order = state_dict order.
    private readonly BasicConv2d Conv2d_1a_3x3, Conv2d_2a_3x3, Conv2d_2b_3x3;
    private readonly MaxPool2d maxpool1;
    private readonly BasicConv2d Conv2d_3b_1x1, Conv2d_4a_3x3;
    private readonly MaxPool2d maxpool2;
    private readonly InceptionA Mixed_5b, Mixed_5c, Mixed_5d;
    private readonly InceptionB Mixed_6a;
    private readonly InceptionC Mixed_6b, Mixed_6c, Mixed_6d, Mixed_6e;
    private readonly InceptionAux? AuxLogits;
    private readonly InceptionD Mixed_7a;
    private readonly InceptionE Mixed_7b, Mixed_7c;
    private readonly AdaptiveAvgPool2d avgpool;
    private readonly Dropout dropout;
    private readonly Linear? fc;

    /// <summary>Length of the pooled feature vector (2048 for the published width).</summary>
    public long FeatureDim { get; }

    public long NumClasses { get; }

    /// <summary>Channel multiplier the network was built with (1.0: the published width).</summary>
    public double Width { get; }

    public bool HasAuxLogits => AuxLogits != null;

    /// <param name="width">Channel multiplier; 1.0 is the published network, smaller values are for tests.</param>
    public InceptionV3(long numClasses = 1000, bool auxLogits = true, double dropout = 0.5, double width = 1.0)
        : base(nameof(InceptionV3))
    {
        if (width <= 0) throw new ArgumentOutOfRangeException(nameof(width), "width multiplier must be positive");
        if (numClasses < 0) throw new ArgumentOutOfRangeException(nameof(numClasses), "number of classes must be >= 0 (0: no fc)");
        if (numClasses == 0 && auxLogits) throw new ArgumentException("AuxLogits needs classes; a feature extractor (numClasses 0) has none");
        long S(long c) => PyTorchOrder.Scale(c, width);
        NumClasses = numClasses;
        Width = width;
        Conv2d_1a_3x3 = new BasicConv2d(3, S(32), 3, stride: 2);
        Conv2d_2a_3x3 = new BasicConv2d(S(32), S(32), 3);
        Conv2d_2b_3x3 = new BasicConv2d(S(32), S(64), 3, padding: 1);
        maxpool1 = MaxPool2d(3, 2);
        Conv2d_3b_1x1 = new BasicConv2d(S(64), S(80), 1);
        Conv2d_4a_3x3 = new BasicConv2d(S(80), S(192), 3);
        maxpool2 = MaxPool2d(3, 2);
        Mixed_5b = new InceptionA(S(192), 32, width);
        Mixed_5c = new InceptionA(Mixed_5b.OutChannels, 64, width);
        Mixed_5d = new InceptionA(Mixed_5c.OutChannels, 64, width);
        Mixed_6a = new InceptionB(Mixed_5d.OutChannels, width);
        Mixed_6b = new InceptionC(Mixed_6a.OutChannels, 128, width);
        Mixed_6c = new InceptionC(Mixed_6b.OutChannels, 160, width);
        Mixed_6d = new InceptionC(Mixed_6c.OutChannels, 160, width);
        Mixed_6e = new InceptionC(Mixed_6d.OutChannels, 192, width);
        AuxLogits = auxLogits ? new InceptionAux(Mixed_6e.OutChannels, numClasses, width) : null;
        Mixed_7a = new InceptionD(Mixed_6e.OutChannels, width);
        Mixed_7b = new InceptionE(Mixed_7a.OutChannels, width);
        Mixed_7c = new InceptionE(Mixed_7b.OutChannels, width);
        avgpool = AdaptiveAvgPool2d(new long[] { 1, 1 });
        this.dropout = Dropout(dropout);
        FeatureDim = Mixed_7c.OutChannels;
        fc = numClasses > 0 ? Linear(FeatureDim, numClasses) : null;
        RegisterComponents();
    }

    /// <summary>Pooled features <c>[B,FeatureDim]</c> from a preprocessed batch <c>[B,3,299,299]</c>.</summary>
    public override Tensor forward(Tensor x)
    {
        if (x.dim() != 4 || x.shape[1] != 3)
            throw new ArgumentException($"InceptionV3 expects a [B,3,H,W] batch, got [{string.Join(",", x.shape)}]");
        if (x.shape[2] < 75 || x.shape[3] < 75)
            throw new ArgumentException($"InceptionV3 needs inputs of at least 75x75 (299x299 nominal), got {x.shape[2]}x{x.shape[3]}");
        using var scope = NewDisposeScope();
        // Inference in channels-last (NHWC) strides: oneDNN then keeps every activation in its native layout
        // instead of reordering to and from NCHW around each of the 94 convolutions (measured on CPU: 1.1-1.5x at
        // batch 1-8). Values are the same up to summation order; the output is [B,2048] either way.
        if (!training && !torch.is_grad_enabled()) x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
        var y = Conv2d_1a_3x3.call(x);
        y = Conv2d_2a_3x3.call(y);
        y = Conv2d_2b_3x3.call(y);
        y = maxpool1.call(y);
        y = Conv2d_3b_1x1.call(y);
        y = Conv2d_4a_3x3.call(y);
        y = maxpool2.call(y);
        y = Mixed_5b.call(y);
        y = Mixed_5c.call(y);
        y = Mixed_5d.call(y);
        y = Mixed_6a.call(y);
        y = Mixed_6b.call(y);
        y = Mixed_6c.call(y);
        y = Mixed_6d.call(y);
        y = Mixed_6e.call(y);
        y = Mixed_7a.call(y);
        y = Mixed_7b.call(y);
        y = Mixed_7c.call(y);
        y = avgpool.call(y).flatten(1);
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>ImageNet class logits (dropout is active only in training mode).</summary>
    public Tensor Logits(Tensor x)
    {
        if (fc is null) throw new InvalidOperationException("this InceptionV3 was built without fc (numClasses 0): it has features, no logits");
        using var scope = NewDisposeScope();
        return fc.call(dropout.call(forward(x))).MoveToOuterDisposeScope();
    }

    /// <summary>Auxiliary logits from Mixed_6e (training regulariser), or null if built without them.</summary>
    public Tensor? AuxiliaryLogits(Tensor x)
    {
        if (AuxLogits is null) return null;
        using var scope = NewDisposeScope();
        var y = maxpool1.call(Conv2d_2b_3x3.call(Conv2d_2a_3x3.call(Conv2d_1a_3x3.call(x))));
        y = maxpool2.call(Conv2d_4a_3x3.call(Conv2d_3b_1x1.call(y)));
        y = Mixed_6a.call(Mixed_5d.call(Mixed_5c.call(Mixed_5b.call(y))));
        y = Mixed_6e.call(Mixed_6d.call(Mixed_6c.call(Mixed_6b.call(y))));
        return AuxLogits.call(y).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Aligned crops <c>[B,3,H,W]</c> RGB in [-1,1] (256² in Deid) → bilinear resize to 299² →
    /// the normalisation the weights expect.
    /// </summary>
    public static Tensor Preprocess(Tensor rgbMinusOneToOne, InceptionInputNormalization normalization = InceptionInputNormalization.MinusOneToOne)
    {
        if (rgbMinusOneToOne.dim() != 4 || rgbMinusOneToOne.shape[1] != 3)
            throw new ArgumentException($"expected RGB crops [B,3,H,W], got [{string.Join(",", rgbMinusOneToOne.shape)}]");
        using var scope = NewDisposeScope();
        var x = rgbMinusOneToOne.to_type(ScalarType.Float32);
        if (x.shape[2] != InputSize || x.shape[3] != InputSize)
            x = F.interpolate(x, new long[] { InputSize, InputSize }, mode: InterpolationMode.Bilinear, align_corners: false);
        if (normalization == InceptionInputNormalization.ImageNet)
        {
            var mean = torch.tensor(new float[] { 0.485f, 0.456f, 0.406f }, device: x.device).view(1, 3, 1, 1);
            var std = torch.tensor(new float[] { 0.229f, 0.224f, 0.225f }, device: x.device).view(1, 3, 1, 1);
            x = ((x + 1) * 0.5 - mean) / std;
        }
        else if (normalization == InceptionInputNormalization.Zero255)
        {
            x = (x + 1) * 127.5;
        }
        return x.MoveToOuterDisposeScope();
    }

    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
        => PyTorchOrder.StateDict(this, destination, prefix);

    private static readonly Lazy<IReadOnlyList<(string Name, long[] Shape)>> s_expectedKeys = new(() =>
    {
        using var net = new InceptionV3();
        return PyTorchOrder.KeysAndShapes(net);
    });

    /// <summary>
    /// Keys and shapes of the published network (torchvision checkpoint names are identical), for
    /// import checks. Built once from a full-size instance (~110 MB briefly).
    /// </summary>
    public static IReadOnlyList<(string Name, long[] Shape)> ExpectedKeys() => s_expectedKeys.Value;
}
