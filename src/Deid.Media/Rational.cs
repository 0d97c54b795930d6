using System.Globalization;

namespace Deid.Media;

/// <summary>An exact rational number as ffmpeg prints it ("30000/1001"); frame rates and time bases.</summary>
public readonly record struct Rational(long Num, long Den)
{
    public double Value => Den == 0 ? 0 : (double)Num / Den;

    public bool IsValid => Num != 0 && Den != 0;

    public Rational Reduce()
    {
        if (Den == 0) return this;
        var g = Gcd(Math.Abs(Num), Math.Abs(Den));
        if (g == 0) return this;
        var s = Den < 0 ? -1 : 1;
        return new Rational(s * Num / g, s * Den / g);
    }

    public Rational Invert() => new(Den, Num);

    public override string ToString() => $"{Num.ToString(CultureInfo.InvariantCulture)}/{Den.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>"30/1", "30000:1001", "30" or a decimal such as "29.97".</summary>
    public static Rational Parse(string s)
    {
        if (TryParse(s, out var r)) return r;
        throw new FormatException($"not a rational number: '{s}'");
    }

    public static bool TryParse(string? s, out Rational value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(s)) return false;
        s = s.Trim();
        var sep = s.IndexOfAny(['/', ':']);
        if (sep >= 0)
        {
            if (!long.TryParse(s[..sep], NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ||
                !long.TryParse(s[(sep + 1)..], NumberStyles.Integer, CultureInfo.InvariantCulture, out var d))
                return false;
            value = new Rational(n, d);
            return true;
        }
        if (long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var whole))
        {
            value = new Rational(whole, 1);
            return true;
        }
        if (decimal.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var dec))
        {
            long den = 1;
            while (decimal.Truncate(dec) != dec && den < 1_000_000_000) { dec *= 10; den *= 10; }
            value = new Rational((long)decimal.Round(dec), den).Reduce();
            return true;
        }
        return false;
    }

    /// <summary>value·from expressed in units of <paramref name="to"/>, rounded to nearest (exact integer arithmetic).</summary>
    public static long Rescale(long value, Rational from, Rational to)
    {
        Int128 num = (Int128)value * from.Num * to.Den;
        Int128 den = (Int128)from.Den * to.Num;
        if (den == 0) throw new DivideByZeroException("rescale to a zero time base");
        if (den < 0) { num = -num; den = -den; }
        var q = num / den;
        var r = num % den;
        // round half away from zero, like av_rescale
        if (r * 2 >= den) q++;
        else if (r * 2 <= -den) q--;
        return (long)q;
    }

    private static long Gcd(long a, long b)
    {
        while (b != 0) (a, b) = (b, a % b);
        return a;
    }
}
