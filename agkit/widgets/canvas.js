// MaskCanvas front end (anywidget): draws the image, the mask overlay and the preview of the
// shape being drawn, and sends every mouse event to the kernel, which rasterises the shape.
const PREVIEW = {
  box: "rgba(255, 220, 0, 0.9)",
  brush: "rgba(255, 220, 0, 0.5)",
  eraser: "rgba(0, 200, 255, 0.5)",
  polygon: "rgba(255, 220, 0, 0.9)",
};

function render({ model, el }) {
  const canvas = document.createElement("canvas");
  canvas.className = "agkit-mask-canvas";
  el.appendChild(canvas);
  const ctx = canvas.getContext("2d");
  const pictures = { image: new Image(), mask: new Image() };
  let drag = null; // canvas points of the stroke under the mouse
  let sent = null; // the last finished stroke, shown until the kernel's overlay arrives
  let sentTimer = null;

  function loaded(picture) {
    return picture.complete && picture.naturalWidth > 0;
  }

  function drawStroke(points, tool) {
    if (!points || points.length === 0) return;
    ctx.strokeStyle = ctx.fillStyle = PREVIEW[tool];
    if (tool === "box") {
      const [x0, y0] = points[0];
      const [x1, y1] = points[points.length - 1];
      ctx.lineWidth = 2;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    } else if (tool === "brush" || tool === "eraser") {
      ctx.lineWidth = 2 * model.get("radius");
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(points[0][0], points[0][1]);
      for (const [x, y] of points) ctx.lineTo(x, y);
      ctx.stroke();
    }
  }

  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = false; // each image and mask pixel stays a crisp square
    for (const picture of [pictures.image, pictures.mask]) {
      if (loaded(picture)) ctx.drawImage(picture, 0, 0, canvas.width, canvas.height);
    }
    if (sent) drawStroke(sent.points, sent.tool);
    if (drag) drawStroke(drag, model.get("tool"));
    const polygon = model.get("polygon");
    if (polygon.length > 0) {
      ctx.strokeStyle = ctx.fillStyle = PREVIEW.polygon;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(polygon[0][0], polygon[0][1]);
      for (const [x, y] of polygon) ctx.lineTo(x, y);
      ctx.stroke();
      for (const [x, y] of polygon) {
        ctx.beginPath();
        ctx.arc(x, y, 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }

  function resize() {
    canvas.width = model.get("width");
    canvas.height = model.get("height");
    canvas.style.width = `${canvas.width}px`;
    canvas.style.height = `${canvas.height}px`;
    draw();
  }

  function load(name) {
    const picture = pictures[name];
    const source = model.get(name);
    picture.onload = () => {
      if (name === "mask") clearSent();
      draw();
    };
    if (source) picture.src = source;
    else picture.removeAttribute("src");
    draw();
  }

  function clearSent() {
    sent = null;
    clearTimeout(sentTimer);
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * canvas.width) / box.width,
      ((event.clientY - box.top) * canvas.height) / box.height,
    ];
  }

  function send(kind, [x, y]) {
    model.send({ event: `mouse_${kind}`, x, y });
  }

  function down(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    const p = point(event);
    if (model.get("tool") !== "polygon") drag = [p];
    send("down", p);
    draw();
  }

  function move(event) {
    if (!drag) return; // the kernel only needs moves during a drag
    const p = point(event);
    drag.push(p);
    send("move", p);
    draw();
  }

  function finish(kind, event) {
    const p = point(event);
    if (drag) {
      clearSent();
      sent = { points: drag.concat([p]), tool: model.get("tool") };
      // an edit that changes nothing sends no overlay back: do not keep its preview forever
      sentTimer = setTimeout(() => { sent = null; draw(); }, 3000);
    }
    if (drag || kind === "up") send(kind, p);
    drag = null;
    draw();
  }

  const up = (event) => finish("up", event);
  const out = (event) => { if (drag) finish("out", event); };
  canvas.addEventListener("mousedown", down);
  canvas.addEventListener("mousemove", move);
  canvas.addEventListener("mouseup", up);
  canvas.addEventListener("mouseleave", out);

  // one event name per call: not every host's model splits "change:a change:b"
  const listeners = [
    ["change:width", resize],
    ["change:height", resize],
    ["change:image", () => load("image")],
    ["change:mask", () => load("mask")],
    ["change:polygon", draw],
    ["change:radius", draw],
    ["change:tool", draw],
  ];
  for (const [name, callback] of listeners) model.on(name, callback);
  resize();
  load("image");
  load("mask");

  return () => {
    for (const [name, callback] of listeners) model.off(name, callback);
    clearSent();
  };
}

export default { render };
