using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Deid.Models.StyleGAN2;

// The building blocks of rosinality's model.py. Field names are the PyTorch attribute names because
// RegisterComponents turns them into the state-dict keys that published checkpoints use.

/// <summary>FIR filtering with zero-insertion upsampling (upfirdn2d with down=1), per channel.</summary>
internal static class Fir
{
    /// <summary>outer(k,k)/sum, times <paramref name="gain"/> (factor² for upsampling, to keep the DC level).</summary>
    public static Tensor MakeKernel(int[] taps, double gain)
    {
        using var k1 = tensor(taps.Select(t => (float)t).ToArray());
        using var k2 = outer(k1, k1);
        using var norm = k2 / k2.sum();
        return gain == 1 ? norm.clone() : norm * gain;
    }

    public static Tensor UpFirDn2d(Tensor x, Tensor kernel, int up, int pad0, int pad1)
    {
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        using var scope = NewDisposeScope();
        var t = x;
        if (up > 1)
        {
            // Zero-insertion: every sample followed by up-1 zeros in each direction.
            t = F.pad(t.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up);
        }
        t = F.pad(t, [pad0, pad1, pad0, pad1]);
        // A true convolution, as upfirdn2d does; conv2d correlates, so the kernel is flipped. One depthwise conv
        // (groups = channels) rather than B·C single-channel images: oneDNN's depthwise kernel is 3-6x faster
        // here (measured at 128x257² and 512x65²), and the blur was about a fifth of G's CPU time.
        using var k = kernel.flip(0, 1).to(t.dtype).expand(c, 1, kernel.shape[0], kernel.shape[1]).contiguous();
        return F.conv2d(t, k, groups: c).MoveToOuterDisposeScope();
    }
}

public sealed class PixelNorm : nn.Module<Tensor, Tensor>
{
    public PixelNorm() : base(nameof(PixelNorm)) => RegisterComponents();

    public override Tensor forward(Tensor x) => x * rsqrt(x.pow(2).mean([1], keepdim: true) + 1e-8);
}

/// <summary>Linear layer with equalized learning rate; with <c>activation</c> the bias goes into a fused LeakyReLU.</summary>
public sealed class EqualLinear : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly double _scale, _lrMul;
    private readonly bool _activation;

    public EqualLinear(int inDim, int outDim, double biasInit = 0, double lrMul = 1, bool activation = false) : base(nameof(EqualLinear))
    {
        using (no_grad())
        {
            weight = new Parameter(randn(outDim, inDim).div_(lrMul));
            bias = new Parameter(full(outDim, biasInit));
        }
        _scale = 1.0 / Math.Sqrt(inDim) * lrMul;
        _lrMul = lrMul;
        _activation = activation;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (_activation)
            return FusedLeakyReLU.Apply(F.linear(x, weight * _scale), bias * _lrMul);
        return F.linear(x, weight * _scale, bias * _lrMul);
    }
}

/// <summary>leaky_relu(x + bias, 0.2)·√2 (the CPU branch of rosinality's fused op; the CUDA kernel agrees).</summary>
public sealed class FusedLeakyReLU : nn.Module<Tensor, Tensor>
{
    private readonly Parameter bias;

    public FusedLeakyReLU(int channels) : base(nameof(FusedLeakyReLU))
    {
        bias = new Parameter(zeros(channels));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Apply(x, bias);

    internal static Tensor Apply(Tensor x, Tensor b)
    {
        var shape = new long[x.dim()];
        Array.Fill(shape, 1L);
        shape[1] = b.shape[0];
        return F.leaky_relu(x + b.view(shape), 0.2) * Math.Sqrt(2.0);
    }
}

/// <summary>FIR low-pass after the transposed convolution of an upsampling layer.</summary>
public sealed class Blur : nn.Module<Tensor, Tensor>
{
    private readonly Tensor kernel;
    private readonly int _pad0, _pad1;

    public Blur(int[] taps, int pad0, int pad1, int upsampleFactor = 1) : base(nameof(Blur))
    {
        kernel = Fir.MakeKernel(taps, upsampleFactor > 1 ? upsampleFactor * upsampleFactor : 1);
        (_pad0, _pad1) = (pad0, pad1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Fir.UpFirDn2d(x, kernel, 1, _pad0, _pad1);
}

/// <summary>2× upsampling of the RGB skip: zero-insertion then the FIR, padded to give exactly 2H×2W.</summary>
public sealed class Upsample : nn.Module<Tensor, Tensor>
{
    private readonly Tensor kernel;
    private readonly int _factor, _pad0, _pad1;

    public Upsample(int[] taps, int factor = 2) : base(nameof(Upsample))
    {
        kernel = Fir.MakeKernel(taps, factor * factor);
        _factor = factor;
        int p = taps.Length - factor;
        _pad0 = (p + 1) / 2 + factor - 1;
        _pad1 = p / 2;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Fir.UpFirDn2d(x, kernel, _factor, _pad0, _pad1);
}

/// <summary>The learned 4×4 start tensor, repeated over the batch.</summary>
public sealed class ConstantInput : nn.Module<Tensor, Tensor>
{
    private readonly Parameter input;

    public ConstantInput(int channels, int size = 4) : base(nameof(ConstantInput))
    {
        input = new Parameter(randn(1, channels, size, size));
        RegisterComponents();
    }

    /// <summary>Only the batch size of <paramref name="latent"/> is used.</summary>
    public override Tensor forward(Tensor latent) => input.repeat(latent.shape[0], 1, 1, 1);
}

/// <summary>x + weight·noise; noise is [B or 1, 1, H, W], drawn fresh when none is given.</summary>
public sealed class NoiseInjection : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly Parameter weight;

    public NoiseInjection() : base(nameof(NoiseInjection))
    {
        weight = new Parameter(zeros(1));
        RegisterComponents();
    }

    public override Tensor forward(Tensor image, Tensor? noise)
    {
        if (noise is null)
        {
            using var fresh = randn([image.shape[0], 1, image.shape[2], image.shape[3]], dtype: image.dtype, device: image.device);
            return image + weight * fresh;
        }
        return image + weight * noise;
    }
}

/// <summary>
/// Style-modulated convolution: the style scales the input channels of the weight, demodulation renormalises
/// each output filter. One sample runs as a plain convolution with its modulated weight (rosinality's way); a batch
/// scales the input channels by the styles instead, convolves with the shared weight and applies the
/// demodulation to the output channels: the same sums, but one dense convolution instead of a grouped one with a
/// weight per sample (NVlabs' non-fused path). On CPU that is 10-30% faster per conv at batch 8 and never builds
/// the B·out·in·k² weight tensor.
/// </summary>
public sealed class ModulatedConv2d : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Blur? blur;
    private readonly Parameter weight;
    private readonly EqualLinear modulation;
    private readonly int _in, _out, _k;
    private readonly double _scale;
    private readonly bool _demodulate, _upsample;

    public ModulatedConv2d(int inChannels, int outChannels, int kernelSize, int styleDim, bool demodulate = true,
                           bool upsample = false, int[]? blurKernel = null) : base(nameof(ModulatedConv2d))
    {
        blurKernel ??= [1, 3, 3, 1];
        if (upsample)
        {
            const int factor = 2;
            int p = blurKernel.Length - factor - (kernelSize - 1);
            blur = new Blur(blurKernel, (p + 1) / 2 + factor - 1, p / 2 + 1, factor);
        }
        weight = new Parameter(randn([1, outChannels, inChannels, kernelSize, kernelSize]));
        modulation = new EqualLinear(styleDim, inChannels, biasInit: 1);
        (_in, _out, _k) = (inChannels, outChannels, kernelSize);
        _scale = 1.0 / Math.Sqrt(inChannels * kernelSize * kernelSize);
        (_demodulate, _upsample) = (demodulate, upsample);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input, Tensor style)
    {
        long batch = input.shape[0], h = input.shape[2], w = input.shape[3];
        // Intermediates (modulated weights or inputs, the 2H+1 transposed-conv output) are large; free them per layer.
        using var scope = NewDisposeScope();
        if (batch > 1) return ForwardBatch(input, style).MoveToOuterDisposeScope();
        var s = modulation.forward(style).view(batch, 1, _in, 1, 1);
        var wt = _scale * weight * s;
        if (_demodulate)
        {
            var demod = rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8);
            wt = wt * demod.view(batch, _out, 1, 1, 1);
        }
        var x = input.view(1, batch * _in, h, w);
        if (_upsample)
        {
            // conv_transpose2d wants [in, out/groups, k, k] per group.
            var wT = wt.transpose(1, 2).reshape(batch * _in, _out, _k, _k);
            var o = F.conv_transpose2d(x, wT, strides: [2, 2], padding: [0, 0], groups: batch);
            return blur!.forward(o.view(batch, _out, o.shape[2], o.shape[3])).MoveToOuterDisposeScope();
        }
        var y = F.conv2d(x, wt.view(batch * _out, _in, _k, _k), padding: [_k / 2, _k / 2], groups: batch);
        return y.view(batch, _out, y.shape[2], y.shape[3]).MoveToOuterDisposeScope();
    }

    /// <summary>conv(x·s, scale·W)·d with d[b,o] = rsqrt(Σ_i s[b,i]² Σ_k (scale·W[o,i,k])² + 1e-8).</summary>
    private Tensor ForwardBatch(Tensor input, Tensor style)
    {
        long batch = input.shape[0];
        var s = modulation.forward(style);
        var wt = _scale * weight.squeeze(0);
        var x = input * s.view(batch, _in, 1, 1);
        var y = _upsample
            ? F.conv_transpose2d(x, wt.transpose(0, 1).contiguous(), strides: [2, 2], padding: [0, 0])
            : F.conv2d(x, wt, padding: [_k / 2, _k / 2]);
        if (_demodulate)
        {
            var demod = rsqrt(matmul(s.pow(2), wt.pow(2).sum([2, 3]).t()) + 1e-8);
            y = y * demod.view(batch, _out, 1, 1);
        }
        return _upsample ? blur!.forward(y) : y;
    }
}

/// <summary>Modulated 3×3 conv → noise → fused LeakyReLU.</summary>
public sealed class StyledConv : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    private readonly ModulatedConv2d conv;
    private readonly NoiseInjection noise;
    private readonly FusedLeakyReLU activate;

    public StyledConv(int inChannels, int outChannels, int kernelSize, int styleDim, bool upsample = false, int[]? blurKernel = null)
        : base(nameof(StyledConv))
    {
        conv = new ModulatedConv2d(inChannels, outChannels, kernelSize, styleDim, upsample: upsample, blurKernel: blurKernel);
        noise = new NoiseInjection();
        activate = new FusedLeakyReLU(outChannels);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input, Tensor style, Tensor? noiseTensor)
    {
        using var scope = NewDisposeScope();
        var c = conv.forward(input, style);
        var n = noise.forward(c, noiseTensor);
        return activate.forward(n).MoveToOuterDisposeScope();
    }
}

/// <summary>1×1 modulated conv to RGB (no demodulation) plus the upsampled RGB of the previous resolution.</summary>
public sealed class ToRGB : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    private readonly Upsample? upsample;
    private readonly ModulatedConv2d conv;
    private readonly Parameter bias;

    public ToRGB(int inChannels, int styleDim, bool upsample = true, int[]? blurKernel = null) : base(nameof(ToRGB))
    {
        if (upsample) this.upsample = new Upsample(blurKernel ?? [1, 3, 3, 1]);
        conv = new ModulatedConv2d(inChannels, 3, 1, styleDim, demodulate: false, blurKernel: blurKernel);
        bias = new Parameter(zeros(1, 3, 1, 1));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input, Tensor style, Tensor? skip)
    {
        if (skip is not null && upsample is null) throw new InvalidOperationException("this ToRGB has no upsampler for a skip input");
        using var scope = NewDisposeScope();
        var o = conv.forward(input, style) + bias;
        if (skip is not null) o = o + upsample!.forward(skip);
        return o.MoveToOuterDisposeScope();
    }
}
