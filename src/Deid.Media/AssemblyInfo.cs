namespace Deid.Media;
